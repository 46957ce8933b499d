/*
** reference_pages.h: the reference pages (the .md files of docs/reference/) in the executable.
**
** cmake/embed_reference.cmake generates the table at build time; repl.c registers it as the
** module "luagrad.reference_pages" (a table {["nn.md"] = text, ...}) that lua/luagrad/help.lua
** reads entries from.
*/
#ifndef LG_REFERENCE_PAGES_H
#define LG_REFERENCE_PAGES_H

#include <stddef.h>

struct lg_reference_page {
  const char *name; /* "nn.md" */
  const unsigned char *bytes;
  size_t len;
};

/* Ended by a row of NULLs. */
extern const struct lg_reference_page lg_reference_pages[];

#endif

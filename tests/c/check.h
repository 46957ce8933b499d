/*
** check.h: what the C tests share. CHECK(cond, fmt, ...) counts a passed check, or prints the
** failed one (file, line, message); CHECK_SUMMARY() prints the line tools/test.sh reads,
** "C tests: N passed, N failed", and gives main's exit status.
*/
#ifndef LG_TEST_CHECK_H
#define LG_TEST_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                                     \
  do {                                                                                                       \
    if (cond) {                                                                                              \
      passed++;                                                                                              \
    } else {                                                                                                 \
      failed++;                                                                                              \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                            \
      printf(__VA_ARGS__);                                                                                   \
      printf("\n");                                                                                          \
    }                                                                                                        \
  } while (0)

#define CHECK_SUMMARY() (printf("C tests: %d passed, %d failed\n", passed, failed), failed != 0)

#endif

std = "lua54"
max_line_length = 130
files["spec/"] = { std = "+busted" }
exclude_files = { "build*/" }
-- "not (x >= y)" is deliberate where NaN must fail a check, so the negated-comparison hint is off
ignore = { "581" }

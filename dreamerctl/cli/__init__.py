"""The command line: one module per command; each parses, builds the config, calls run/, renders."""

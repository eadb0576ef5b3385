/* cli.h - the mapguard command's subcommands. */
#ifndef MG_CLI_H
#define MG_CLI_H

int mg_cli_doctor(int argc, char **argv);

/* `mapguard analyze [--json] ... FILE|-` (analyze.c): read a crash (Go's
 * fatal error, panic or goroutine dump; mapguard's fatal report, text or
 * JSON) and explain it.  Returns the exit status: 0 explained, 1 nothing
 * recognisable, 2 bad usage or bad input (docs/analyze.md). */
int mg_cli_analyze(int argc, char **argv);

#endif

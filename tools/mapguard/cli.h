/* cli.h - the mapguard command's subcommands. */
#ifndef MG_CLI_H
#define MG_CLI_H

int mg_cli_doctor(int argc, char **argv);

#endif

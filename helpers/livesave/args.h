/* Argument parsing of zynclone-livesave, apart from libxl so it is testable anywhere. */
#ifndef ZYNCLONE_LIVESAVE_ARGS_H
#define ZYNCLONE_LIVESAVE_ARGS_H
#include <stdbool.h>

#define LIVESAVE_USAGE                                                      \
    "usage: zynclone-livesave [--hold] [--verbose] DOMAIN FILE\n"           \
    "       zynclone-livesave --resume [--verbose] DOMAIN\n"

struct livesave_args {
    bool help, hold, resume, verbose;
    const char *domain;
    const char *file;
};

/* Fills *args; returns NULL, or what is wrong with argv. */
const char *livesave_parse_args(int argc, char **argv, struct livesave_args *args);
#endif

#include "args.h"

#include <string.h>

static bool valid_domain(const char *s)
{
    /* A domid or an xl domain name; never empty, never an option. */
    return *s && *s != '-' && strlen(s) < 256;
}

const char *livesave_parse_args(int argc, char **argv, struct livesave_args *args)
{
    memset(args, 0, sizeof *args);
    const char *positional[2];
    int npositional = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && a[0] == '-' && a[1]) {
            if (!strcmp(a, "--"))
                options_done = true;
            else if (!strcmp(a, "--hold"))
                args->hold = true;
            else if (!strcmp(a, "--resume"))
                args->resume = true;
            else if (!strcmp(a, "--verbose"))
                args->verbose = true;
            else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
                args->help = true;
            else
                return "unknown option";
            continue;
        }
        if (npositional == 2)
            return "too many arguments";
        positional[npositional++] = a;
    }
    if (args->help)
        return NULL;
    if (args->resume && args->hold)
        return "--hold and --resume exclude each other";
    int wanted = args->resume ? 1 : 2;
    if (npositional < wanted)
        return args->resume ? "missing DOMAIN" : "missing DOMAIN or FILE";
    if (npositional > wanted)
        return "too many arguments";
    if (!valid_domain(positional[0]))
        return "DOMAIN must be a domain id or name";
    args->domain = positional[0];
    if (!args->resume) {
        if (!*positional[1])
            return "FILE is empty";
        args->file = positional[1];
    }
    return NULL;
}

/* Tests of zynclone-livesave's argv handling; runs on any host (no libxl). */
#include <stdio.h>
#include <string.h>

#include "args.h"

static int failures;

static void expect(const char *name, const char *want_error, int argc, char **argv,
                   struct livesave_args *out)
{
    const char *got = livesave_parse_args(argc, argv, out);
    if ((got == NULL) != (want_error == NULL) || (got && strcmp(got, want_error))) {
        printf("FAIL %s: got \"%s\", want \"%s\"\n", name, got ? got : "ok",
               want_error ? want_error : "ok");
        failures++;
    } else {
        printf("ok   %s\n", name);
    }
}

#define ARGV(...) (char *[]){"zynclone-livesave", __VA_ARGS__, NULL}
#define N(...) ((int)(sizeof((char *[]){"x", __VA_ARGS__}) / sizeof(char *)))
#define CASE(name, want, ...) expect(name, want, N(__VA_ARGS__), ARGV(__VA_ARGS__), &a)

int main(void)
{
    struct livesave_args a;
    char *none[] = {"zynclone-livesave", NULL};
    expect("no arguments", "missing DOMAIN or FILE", 1, none, &a);
    CASE("save", NULL, "7", "/tmp/x.save");
    if (a.hold || a.resume || strcmp(a.domain, "7") || strcmp(a.file, "/tmp/x.save")) {
        printf("FAIL save: fields\n");
        failures++;
    }
    CASE("save by name with --hold", NULL, "--hold", "vm-a", "f");
    if (!a.hold || strcmp(a.domain, "vm-a")) {
        printf("FAIL --hold: fields\n");
        failures++;
    }
    CASE("missing file", "missing DOMAIN or FILE", "7");
    CASE("too many", "too many arguments", "7", "f", "g");
    CASE("unknown option", "unknown option", "--live", "7", "f");
    CASE("single dash option", "unknown option", "-p", "7", "f");
    CASE("empty domain", "DOMAIN must be a domain id or name", "", "f");
    CASE("empty file", "FILE is empty", "7", "");
    CASE("domain after --", "DOMAIN must be a domain id or name", "--", "-3", "f");
    CASE("resume", NULL, "--resume", "7");
    if (!a.resume || a.file) {
        printf("FAIL resume: fields\n");
        failures++;
    }
    CASE("resume with a file", "too many arguments", "--resume", "7", "f");
    CASE("resume and hold", "--hold and --resume exclude each other", "--resume", "--hold", "7");
    CASE("help", NULL, "--help");
    if (!a.help) {
        printf("FAIL help: fields\n");
        failures++;
    }
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}

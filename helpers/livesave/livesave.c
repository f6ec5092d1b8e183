/*
 * zynclone-livesave: save a running domain's memory into a file that
 * `xl restore` reads, copying memory while the domain runs (libxl's live
 * suspend, as `xl migrate` does) and pausing it only for the last round;
 * then resume the original in place (suspend_cancel, as `xl save -c` does).
 *
 *   zynclone-livesave [--hold] [--verbose] DOMAIN FILE
 *   zynclone-livesave --resume DOMAIN
 *
 * DOMAIN is a domain id or name. With --hold, the helper prints the
 * "suspended" event once the image is complete and the domain is suspended,
 * and resumes it only when a line arrives on stdin (or stdin closes), so the
 * caller can snapshot disks at the same instant as the memory image.
 * --resume resumes a domain left suspended by a helper that was killed in
 * its final pause; it refuses a domain that is not suspended.
 *
 * The helper gets SIGTERM when its parent dies (PR_SET_PDEATHSIG): while it
 * holds the domain suspended it resumes it as on end of stdin; before that
 * it stops at once, the domain still running (or, killed inside libxl's own
 * suspend, left suspended for --resume).
 *
 * Output: one JSON object per line on stdout (events and the final result);
 * libxl's warnings and errors go to stderr. Exit 0 on success, 1 on a
 * failure (the domain is resumed whenever it was suspended), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <libxl.h>
#include <libxl_utils.h>
#include <xentoollog.h>

#include "args.h"

/* xl's save-file header (tools/xl/xl.h, struct save_file_header). */
static const char savefile_magic[32] = "Xen saved domain, xl format\n \0 \r";
#define SAVEFILE_BYTEORDER_VALUE ((uint32_t)0x01020304UL)
#define XL_MANDATORY_FLAG_JSON (1U << 0)
#define XL_MANDATORY_FLAG_STREAMv2 (1U << 1)
struct save_file_header {
    char magic[32];
    uint32_t byteorder;
    uint32_t mandatory_flags;
    uint32_t optional_flags;
    uint32_t optional_data_len;
};

/* Wall-clock time of day (UTC, ms) before each stderr line, to match them with Xen's log. */
static void stamp(void)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ld ", tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * A logger that notes when libxl asks the guest to suspend: that is the start
 * of the final pause (libxl_dom_suspend.c logs "issuing ... suspend request"
 * right before notifying the guest). Everything at warning level or above, or
 * all of it with --verbose, goes to stderr.
 */
struct timing_logger {
    xentoollog_logger vtable;
    bool verbose;
    double suspend_requested_ms;
    unsigned suspend_requests;
    /* libxc's rounds ("Frames iteration N" progress): how many, and the last one's pages. */
    unsigned rounds;
    unsigned long final_round_pages;
};

static void timing_vmessage(xentoollog_logger *logger, xentoollog_level level, int errnoval,
                            const char *context, const char *format, va_list al)
{
    struct timing_logger *lg = (struct timing_logger *)logger;
    char msg[1024];
    vsnprintf(msg, sizeof msg, format, al);
    if (strstr(msg, "suspend request")) {
        lg->suspend_requested_ms = now_ms();
        lg->suspend_requests++;
    }
    if (lg->verbose || level >= XTL_WARN) {
        stamp();
        fprintf(stderr, "%s: %s%s%s\n", context ? context : "libxl", msg,
                errnoval >= 0 ? ": " : "", errnoval >= 0 ? strerror(errnoval) : "");
    }
}

static void timing_progress(xentoollog_logger *logger, const char *context,
                            const char *doing_what, int percent, unsigned long done,
                            unsigned long total)
{
    struct timing_logger *lg = (struct timing_logger *)logger;
    unsigned iteration;
    if (doing_what && sscanf(doing_what, "Frames iteration %u", &iteration) == 1) {
        if (iteration + 1 > lg->rounds)
            lg->rounds = iteration + 1;
        if (iteration + 1 == lg->rounds)
            lg->final_round_pages = total;
    }
    if (lg->verbose) {
        stamp();
        fprintf(stderr, "%s: %s %d%% (%lu/%lu)\n", context ? context : "libxl", doing_what,
                percent, done, total);
    }
}

static void timing_destroy(xentoollog_logger *logger) { (void)logger; }

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int fail(const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("{\"event\":\"error\",\"code\":");
    print_json_string(code);
    printf(",\"message\":");
    print_json_string(msg);
    printf("}\n");
    fflush(stdout);
    return 1;
}

static int resolve_domid(libxl_ctx *ctx, const char *domain, uint32_t *domid)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(domain, &end, 10);
    if (*domain && !*end && !errno && n < 0x7ff0) {
        *domid = (uint32_t)n;
        return 0;
    }
    return libxl_name_to_domid(ctx, domain, domid);
}

/* True when the domain exists and is shut down for suspend. */
static bool is_suspended(libxl_ctx *ctx, uint32_t domid)
{
    libxl_dominfo info;
    libxl_dominfo_init(&info);
    bool suspended = libxl_domain_info(ctx, &info, domid) == 0 && info.shutdown &&
                     info.shutdown_reason == LIBXL_SHUTDOWN_REASON_SUSPEND;
    libxl_dominfo_dispose(&info);
    return suspended;
}

static int write_header(libxl_ctx *ctx, uint32_t domid, int fd, const char *file)
{
    libxl_domain_config config;
    libxl_domain_config_init(&config);
    int rc = libxl_retrieve_domain_configuration(ctx, domid, &config, NULL);
    char *json = rc ? NULL : libxl_domain_config_to_json(ctx, &config);
    libxl_domain_config_dispose(&config);
    if (!json)
        return fail("CONFIG", "cannot read the configuration of domain %" PRIu32, domid);

    uint32_t config_len = (uint32_t)strlen(json) + 1; /* with its NUL, as xl writes it */
    struct save_file_header hdr;
    memset(&hdr, 0, sizeof hdr);
    memcpy(hdr.magic, savefile_magic, sizeof hdr.magic);
    hdr.byteorder = SAVEFILE_BYTEORDER_VALUE;
    hdr.mandatory_flags = XL_MANDATORY_FLAG_STREAMv2 | XL_MANDATORY_FLAG_JSON;
    hdr.optional_data_len = 4 + config_len;
    rc = libxl_write_exactly(ctx, fd, &hdr, sizeof hdr, file, "header");
    if (!rc)
        rc = libxl_write_exactly(ctx, fd, &config_len, 4, file, "header");
    if (!rc)
        rc = libxl_write_exactly(ctx, fd, json, config_len, file, "header");
    free(json);
    return rc ? fail("WRITE", "cannot write the header of %s", file) : 0;
}

/* Set while the domain is held suspended: SIGTERM then only ends the wait. */
static volatile sig_atomic_t holding;

static void on_sigterm(int sig)
{
    (void)sig;
    if (!holding)
        _exit(1);
}

/*
 * Waits for one line (or end of file, or SIGTERM) on stdin: the caller's
 * go-ahead. read(2), not stdio, so that SIGTERM (installed without
 * SA_RESTART) interrupts it.
 */
static void wait_for_go_ahead(void)
{
    char c;
    holding = 1;
    while (read(STDIN_FILENO, &c, 1) == 1 && c != '\n')
        ;
}

/*
 * A live save needs the hypervisor to track dirty pages: HAP for PVH and
 * HVM guests, shadow paging for PV ones. Debian's Xen 4.17 is built without
 * shadow paging, where libxc would fail only after the header is written.
 */
static int check_live_possible(libxl_ctx *ctx, uint32_t domid)
{
    libxl_dominfo info;
    libxl_physinfo phys;
    libxl_dominfo_init(&info);
    libxl_physinfo_init(&phys);
    int rc = libxl_domain_info(ctx, &info, domid);
    if (!rc)
        rc = libxl_get_physinfo(ctx, &phys);
    bool pv = info.domain_type == LIBXL_DOMAIN_TYPE_PV;
    bool tracked = pv ? phys.cap_shadow : (phys.cap_hap || phys.cap_shadow);
    libxl_dominfo_dispose(&info);
    libxl_physinfo_dispose(&phys);
    if (rc)
        return fail("NO_DOMAIN", "cannot read domain %" PRIu32 " or the host's capabilities", domid);
    if (!tracked)
        return fail("NO_LOG_DIRTY",
                    "domain %" PRIu32 " is %s and this hypervisor has no %s: it cannot track "
                    "the pages the guest dirties, so it cannot be saved live",
                    domid, pv ? "a PV guest" : "an HVM/PVH guest",
                    pv ? "shadow paging" : "HAP or shadow paging");
    return 0;
}

static int resume(libxl_ctx *ctx, uint32_t domid)
{
    return libxl_domain_resume(ctx, domid, 1, NULL);
}

static int run_resume(libxl_ctx *ctx, uint32_t domid)
{
    if (!is_suspended(ctx, domid))
        return fail("NOT_SUSPENDED", "domain %" PRIu32 " is not suspended", domid);
    if (resume(ctx, domid))
        return fail("RESUME", "cannot resume domain %" PRIu32, domid);
    printf("{\"event\":\"resumed\",\"domid\":%" PRIu32 "}\n", domid);
    return 0;
}

static int run_save(libxl_ctx *ctx, struct timing_logger *lg, uint32_t domid,
                    const struct livesave_args *args)
{
    if (check_live_possible(ctx, domid))
        return 1;
    int fd = open(args->file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fail("OPEN", "cannot create %s: %s", args->file, strerror(errno));
    int rc = write_header(ctx, domid, fd, args->file);
    if (rc) {
        close(fd);
        unlink(args->file);
        return rc;
    }
    double start = now_ms();
    rc = libxl_domain_suspend(ctx, domid, fd, LIBXL_SUSPEND_LIVE, NULL);
    double saved = now_ms();
    int close_rc = close(fd);
    if (rc || close_rc) {
        /* Leave the original running, whatever round failed. */
        if (is_suspended(ctx, domid))
            resume(ctx, domid);
        unlink(args->file);
        return fail("SUSPEND", "live save of domain %" PRIu32 " failed (libxl rc %d)", domid, rc);
    }
    if (args->hold) {
        printf("{\"event\":\"suspended\",\"domid\":%" PRIu32 "}\n", domid);
        fflush(stdout);
        wait_for_go_ahead();
    }
    double before_resume = now_ms();
    rc = resume(ctx, domid);
    double resumed = now_ms();
    if (rc)
        return fail("RESUME", "domain %" PRIu32 " was saved but did not resume", domid);
    printf("{\"event\":\"saved\",\"domid\":%" PRIu32 ",\"file\":", domid);
    print_json_string(args->file);
    /* Without libxl's suspend request line the start of the pause is unknown. */
    if (lg->suspend_requests)
        printf(",\"pauseMs\":%.1f", resumed - lg->suspend_requested_ms);
    else
        printf(",\"pauseMs\":null");
    printf(",\"copyMs\":%.1f,\"resumeMs\":%.1f,\"totalMs\":%.1f", saved - start,
           resumed - before_resume, resumed - start);
    if (lg->rounds)
        printf(",\"rounds\":%u,\"finalRoundPages\":%lu}\n", lg->rounds, lg->final_round_pages);
    else
        printf(",\"rounds\":null,\"finalRoundPages\":null}\n");
    return 0;
}

int main(int argc, char **argv)
{
    struct livesave_args args;
    const char *usage_error = livesave_parse_args(argc, argv, &args);
    if (usage_error) {
        fprintf(stderr, "zynclone-livesave: %s\n%s", usage_error, LIVESAVE_USAGE);
        return 2;
    }
    if (args.help) {
        fputs(LIVESAVE_USAGE, stdout);
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm; /* no SA_RESTART: it interrupts the wait for the go-ahead */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);

    struct timing_logger lg = {
        .vtable = {.vmessage = timing_vmessage,
                   .progress = timing_progress,
                   .destroy = timing_destroy},
        .verbose = args.verbose,
    };
    libxl_ctx *ctx = NULL;
    if (libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0, &lg.vtable))
        return fail("LIBXL", "cannot open libxl (is this dom0 with xenstored running?)");
    uint32_t domid;
    int rc;
    if (resolve_domid(ctx, args.domain, &domid))
        rc = fail("NO_DOMAIN", "no domain %s", args.domain);
    else if (domid == 0)
        rc = fail("DOM0", "refusing to save domain 0");
    else
        rc = args.resume ? run_resume(ctx, domid) : run_save(ctx, &lg, domid, &args);
    libxl_ctx_free(ctx);
    return rc;
}

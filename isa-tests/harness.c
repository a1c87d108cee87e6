/* isa-tests harness: runs stamped copies of our trampoline on one ISA and prints one PASS/FAIL line per check. */

/*
 * Built once per ISA against the tramp.h that isa-tests/emit.rs generated for it, and run
 * natively (x86-64) or under qemu-user. The copies are loaded the way src/arena.rs does it:
 * mapped read-write, filled, switched to read-execute, instruction cache flushed.
 *
 * call_through() plays the CPython code that calls the eval hook's trampoline, fake_eval()
 * plays _PyEval_EvalFrameDefault. Each lives in its own section so that a return address can
 * be attributed to it exactly (the linker defines __start_/__stop_ symbols for such
 * sections). Each check runs in its own child process, so a crash fails that check alone.
 */

#define _GNU_SOURCE
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <unwind.h>

#include "tramp.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* libgcc: adds a whole .eh_frame section (ended by a zero word) to the unwinder's tables. */
void __register_frame(const void *begin);

typedef void *(*eval_fn)(void *tstate, void *frame, int throwflag);
typedef void *(*tramp_fn)(void *tstate, void *frame, int throwflag, eval_fn eval);

#if defined(__x86_64__) || defined(__aarch64__)
/* The SysV x86-64 and AAPCS64 psABIs leave the upper half of an int argument's register
   unspecified: our caller fills it with garbage, and only the low half has to arrive. */
#define INT_ARG_SIGN_EXTENDED 0
#define DIRTY_UPPER_HALF 0xa5a5a5a500000000UL
#elif defined(__riscv) || defined(__s390x__)
/* The RISC-V LP64 and s390x ELF psABIs pass an int sign-extended to the whole register,
   and a callee may rely on it, so the trampoline must hand it on extended. */
#define INT_ARG_SIGN_EXTENDED 1
#else
#error "isa-tests: unknown ISA"
#endif

/* The register a frame walk starts from, read inside the function whose frame it is. */
#if defined(__x86_64__)
#define FRAME_REGISTER(r) __asm__ volatile("movq %%rbp, %0" : "=r"(r))
#elif defined(__aarch64__)
#define FRAME_REGISTER(r) __asm__ volatile("mov %0, x29" : "=r"(r))
#elif defined(__riscv)
#define FRAME_REGISTER(r) __asm__ volatile("mv %0, s0" : "=r"(r))
#elif defined(__s390x__)
#define FRAME_REGISTER(r) __asm__ volatile("lgr %0, %%r15" : "=d"(r))
#endif

#define MAX_FRAMES 16

/* Return addresses, innermost first, as one walk saw them, and why it ended. */
struct chain {
    int n;
    uintptr_t pc[MAX_FRAMES];
    char stop[96];
};

/* What fake_eval saw on its last call, and what it is to return and record. */
static struct {
    int calls;
    void *tstate, *frame;
    long throw_reg;
    void *result;
    int record_walks;
    struct chain fp, dwarf;
} probe;

static uintptr_t copies[N_COPIES], broken;

/* Frame walks stay between fake_eval and main, so they never dereference garbage. */
static uintptr_t stack_top;

/* Shared with the parent: what a check child was doing, to name it if the child dies. */
static char *doing;

static void set_doing(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(doing, 256, fmt, ap);
    va_end(ap);
}

static int next_frame_ok(uintptr_t cur, uintptr_t next)
{
    return next > cur && next < stack_top && next % 8 == 0;
}

static void why_walk_stopped(struct chain *c, const char *link, uintptr_t cur, uintptr_t next)
{
    if (next >= stack_top && next % 8 == 0)
        snprintf(c->stop, sizeof c->stop, "then main's frames");
    else
        snprintf(c->stop, sizeof c->stop, "%s 0x%lx does not lead up the stack from 0x%lx", link, next, cur);
}

/*
 * One step of the frame-pointer walk Linux perf does on user stacks (perf_callchain_user),
 * from a cursor to the return address it holds and the caller's cursor. Returns 0 when
 * there is no return address to read.
 */
static int frame_step(uintptr_t cur, uintptr_t *ra, uintptr_t *next)
{
#if defined(__s390x__)
    /* The cursor is r15. [r15] is the back chain (the caller's r15); a function saves its
       return address r14 at offset 112 of its caller's frame, in the register save area. */
    *next = *(const uintptr_t *)cur;
    if (!next_frame_ok(cur, *next))
        return 0;
    *ra = *(const uintptr_t *)(*next + 112);
#else
#if defined(__riscv)
    /* psABI frame pointer convention: s0 holds the CFA, and the frame record
       {caller's s0, return address} sits just below it. */
    const uintptr_t *record = (const uintptr_t *)cur - 2;
#else
    /* rbp / x29 points at the frame record {caller's rbp / x29, return address}. */
    const uintptr_t *record = (const uintptr_t *)cur;
#endif
    *next = record[0];
    *ra = record[1];
#endif
    return 1;
}

static void walk_frame_chain(uintptr_t cur, struct chain *c)
{
    c->n = 0;
    snprintf(c->stop, sizeof c->stop, "walk cut at %d frames", MAX_FRAMES);
    while (c->n < MAX_FRAMES) {
        uintptr_t ra, next;
        if (!frame_step(cur, &ra, &next)) {
            why_walk_stopped(c, "back chain", cur, next);
            return;
        }
        c->pc[c->n++] = ra;
        if (!next_frame_ok(cur, next)) {
            why_walk_stopped(c, "saved frame pointer", cur, next);
            return;
        }
        cur = next;
    }
}

static _Unwind_Reason_Code record_pc(struct _Unwind_Context *ctx, void *arg)
{
    struct chain *c = arg;
    if (c->n == MAX_FRAMES)
        return _URC_END_OF_STACK;
    c->pc[c->n++] = _Unwind_GetIP(ctx);
    return _URC_NO_REASON;
}

/* Stands in for _PyEval_EvalFrameDefault. The trampoline passes `int throwflag`; the
   parameter is declared `long` here so the whole register can be inspected. */
__attribute__((noipa, section("eval_text"))) static void *fake_eval(void *tstate, void *frame, long throw_reg)
{
    probe.calls++;
    probe.tstate = tstate;
    probe.frame = frame;
    probe.throw_reg = throw_reg;
    if (probe.record_walks) {
        uintptr_t fp;
        FRAME_REGISTER(fp);
        walk_frame_chain(fp, &probe.fp);
        probe.dwarf.n = 0;
        int rc = _Unwind_Backtrace(record_pc, &probe.dwarf);
        snprintf(probe.dwarf.stop, sizeof probe.dwarf.stop, "_Unwind_Backtrace returned %d", rc);
    }
    return probe.result;
}

/* fake_eval as the evaluator type; going through void (*)(void) tells the compiler that the
   different third parameter is intended. */
#define EVAL ((eval_fn)(void (*)(void))fake_eval)

/* Leaves zeros where the trampoline's frame will go, so that a stale frame record or back
   chain from an earlier call cannot stand in for one the code under test failed to write. */
__attribute__((noipa)) static void scrub_stack(void)
{
    volatile unsigned char area[4096];
    for (size_t i = 0; i < sizeof area; i++)
        area[i] = 0;
}

/* Stands in for the CPython code that calls the eval hook. Built with
   -fno-optimize-sibling-calls: as a tail call, this frame would be gone during the call. */
__attribute__((noipa, section("caller_text"))) static void *call_through(uintptr_t code, void *tstate, void *frame, int throwflag)
{
    scrub_stack();
#if INT_ARG_SIGN_EXTENDED
    return ((tramp_fn)code)(tstate, frame, throwflag, EVAL);
#else
    typedef void *(*dirty_tramp_fn)(void *, void *, unsigned long, eval_fn);
    return ((dirty_tramp_fn)code)(tstate, frame, DIRTY_UPPER_HALF | (uint32_t)throwflag, EVAL);
#endif
}

extern const char __start_caller_text[], __stop_caller_text[];
extern const char __start_eval_text[], __stop_eval_text[];

static int in_section(uintptr_t pc, const char *start, const char *stop)
{
    return pc > (uintptr_t)start && pc <= (uintptr_t)stop;
}

/* The walk shows the copy's call and, right after it, call_through. */
static int reaches_caller(const struct chain *c, uintptr_t copy)
{
    for (int i = 0; i + 1 < c->n; i++)
        if (c->pc[i] == copy + TRAMP_CALL_RETURN_OFFSET)
            return in_section(c->pc[i + 1], __start_caller_text, __stop_caller_text);
    return 0;
}

static int has_pc(const struct chain *c, uintptr_t pc)
{
    for (int i = 0; i < c->n; i++)
        if (c->pc[i] == pc)
            return 1;
    return 0;
}

/* The first few return addresses of a walk, named where we know them. */
static const char *show(const struct chain *c, uintptr_t copy)
{
    static char buf[400];
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < c->n && i < 4 && at < sizeof buf; i++) {
        uintptr_t pc = c->pc[i];
        const char *sep = i ? " > " : "";
        if (pc >= copy && pc <= copy + sizeof tramp_code)
            at += snprintf(buf + at, sizeof buf - at, "%stramp+%lu", sep, pc - copy);
        else if (in_section(pc, __start_caller_text, __stop_caller_text))
            at += snprintf(buf + at, sizeof buf - at, "%scall_through+0x%lx", sep, pc - (uintptr_t)__start_caller_text);
        else if (in_section(pc, __start_eval_text, __stop_eval_text))
            at += snprintf(buf + at, sizeof buf - at, "%sfake_eval+0x%lx", sep, pc - (uintptr_t)__start_eval_text);
        else
            at += snprintf(buf + at, sizeof buf - at, "%s0x%lx", sep, pc);
    }
    if (at < sizeof buf)
        snprintf(buf + at, sizeof buf - at, "%s (%s)", c->n > 4 ? " > ..." : "", c->stop);
    return buf;
}

static int failed;

static void report(int ok, const char *check, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %s %s: ", ok ? "PASS" : "FAIL", ISA_NAME, check);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    failed |= !ok;
}

static uintptr_t load_copy(uintptr_t addr, const unsigned char *code, size_t len)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t base = addr & ~(page - 1);
    /* Like the arena, keep READ_SLACK bytes after the copy mapped: unwinders peek past the code. */
    size_t span = (addr + len + READ_SLACK - base + page - 1) & ~(page - 1);
    /* qemu-user before 8.x treats MAP_FIXED_NOREPLACE as a hint, hence the address check. */
    void *m = mmap((void *)base, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (m != (void *)base) {
        printf("FAIL %s setup: could not map 0x%lx bytes at 0x%lx (got %p)\n", ISA_NAME, (unsigned long)span, base, m);
        exit(2);
    }
#if defined(__x86_64__)
    memset(m, 0xcc, span); /* int3, as the arena fills gaps */
#else
    memset(m, 0, span); /* an illegal instruction on the other three */
#endif
    memcpy((void *)addr, code, len);
    if (mprotect(m, span, PROT_READ | PROT_EXEC) != 0) {
        printf("FAIL %s setup: mprotect RX at 0x%lx failed\n", ISA_NAME, base);
        exit(2);
    }
    __builtin___clear_cache((char *)addr, (char *)addr + len);
    return addr;
}

/* One call; returns NULL if arguments and result went through unchanged, else what differed. */
static const char *call_once(uintptr_t code, int n, int throwflag)
{
    static char why[200];
    void *tstate = (void *)(0x7ffd123456780000UL + 16UL * (unsigned long)n);
    void *frame = (void *)(0xfedcba9876543210UL ^ (unsigned long)n);
    probe.calls = 0;
    probe.result = (void *)(0x8badf00d00000000UL | (unsigned long)n);
    void *got = call_through(code, tstate, frame, throwflag);
    if (probe.calls != 1)
        snprintf(why, sizeof why, "eval called %d times", probe.calls);
    else if (probe.tstate != tstate || probe.frame != frame)
        snprintf(why, sizeof why, "tstate/frame arrived as %p/%p, sent %p/%p", probe.tstate, probe.frame, tstate, frame);
    else if ((int)probe.throw_reg != throwflag)
        snprintf(why, sizeof why, "throwflag arrived as %d (register 0x%lx), sent %d", (int)probe.throw_reg,
                 (unsigned long)probe.throw_reg, throwflag);
    else if (INT_ARG_SIGN_EXTENDED && probe.throw_reg != (long)throwflag)
        snprintf(why, sizeof why, "throwflag %d arrived without sign extension: register 0x%lx", throwflag,
                 (unsigned long)probe.throw_reg);
    else if (got != probe.result)
        snprintf(why, sizeof why, "returned %p, eval returned %p", got, probe.result);
    else
        return NULL;
    return why;
}

static void check_call_through(void)
{
    static const int flags[] = {0, 1, -1, 42, INT_MIN, INT_MAX, -0x12345678};
    const int nflags = sizeof flags / sizeof *flags;
    for (int c = 0; c < N_COPIES; c++)
        for (int f = 0; f < nflags; f++) {
            set_doing("calling the copy at 0x%lx (%s) with throwflag %d", copies[c], copy_where[c], flags[f]);
            const char *why = call_once(copies[c], c * nflags + f, flags[f]);
            if (why) {
                report(0, "call-through", "copy at 0x%lx (%s), throwflag %d: %s", copies[c], copy_where[c], flags[f], why);
                return;
            }
        }
    report(1, "call-through", "%d copies x %d throwflags (0, +-1, INT_MIN, INT_MAX, ...): arguments and result unchanged, %s",
           N_COPIES, nflags,
           INT_ARG_SIGN_EXTENDED ? "throwflag sign-extended to 64 bits as the psABI requires"
                                 : "throwflag's low half intact under a caller-dirtied upper half");
}

/* Calls a copy with fake_eval recording both walks. */
static void walk_from_eval(uintptr_t copy, const char *what)
{
    set_doing("walking the stack from fake_eval called through the copy at 0x%lx (%s)", copy, what);
    probe.record_walks = 1;
    call_once(copy, 0, -1);
    probe.record_walks = 0;
}

static void check_walk(const char *check, const struct chain *walk)
{
    for (int c = 0; c < N_COPIES; c++) {
        walk_from_eval(copies[c], copy_where[c]);
        if (!reaches_caller(walk, copies[c])) {
            report(0, check, "copy at 0x%lx (%s): want tramp+%d > call_through, walk from fake_eval saw %s", copies[c],
                   copy_where[c], TRAMP_CALL_RETURN_OFFSET, show(walk, copies[c]));
            return;
        }
    }
    report(1, check, "%d copies, walk from fake_eval: %s", N_COPIES, show(walk, copies[N_COPIES - 1]));
}

static void check_fp_chain(void)
{
    check_walk("fp-chain", &probe.fp);
}

static void check_dwarf_unwind(void)
{
    check_walk("dwarf-unwind", &probe.dwarf);
}

/* Without our FDE the unwinder must stop cleanly at the trampoline: shows that dwarf-unwind
   owes its result to the .eh_frame we register, and that an unwind through an unregistered
   copy (glibc's backtrace(), as the library does not register its copies) is harmless. */
static void check_dwarf_without_fde(void)
{
    for (int c = 0; c < N_COPIES; c++) {
        walk_from_eval(copies[c], copy_where[c]);
        if (!has_pc(&probe.dwarf, copies[c] + TRAMP_CALL_RETURN_OFFSET) || reaches_caller(&probe.dwarf, copies[c])) {
            report(0, "dwarf-without-fde", "copy at 0x%lx (%s): want the unwind to stop at tramp+%d, saw %s", copies[c],
                   copy_where[c], TRAMP_CALL_RETURN_OFFSET, show(&probe.dwarf, copies[c]));
            return;
        }
    }
    report(1, "dwarf-without-fde", "%d copies, nothing registered: %s", N_COPIES, show(&probe.dwarf, copies[N_COPIES - 1]));
}

/* The negative test: a copy that still calls through but leaves its frame record out of
   the chain must make the frame-pointer check fail. */
static void check_broken_detected(void)
{
    set_doing("calling the broken copy at 0x%lx", broken);
    const char *why = call_once(broken, 0, INT_MIN);
    if (why) {
        report(0, "broken-detected", "the broken copy (%s) does not even call through: %s", BROKEN_HOW, why);
        return;
    }
    walk_from_eval(broken, "broken");
    int caught = !reaches_caller(&probe.fp, broken);
    report(caught, "broken-detected", "%s: fp-chain %s: %s", BROKEN_HOW,
           caught ? "fails as it must" : "still passes, so it cannot tell", show(&probe.fp, broken));
}

static int run_check(const char *name, void (*check)(void))
{
    fflush(stdout);
    doing[0] = 0;
    pid_t pid = fork();
    if (pid == 0) {
        check();
        fflush(stdout);
        _exit(failed);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        report(0, name, "could not run the check in a child process");
        return 1;
    }
    if (WIFSIGNALED(status)) {
        report(0, name, "killed by signal %d (%s) while %s", WTERMSIG(status), strsignal(WTERMSIG(status)), doing);
        return 1;
    }
    return WEXITSTATUS(status) != 0;
}

int main(void)
{
    volatile char top;
    stack_top = (uintptr_t)&top;
    setvbuf(stdout, NULL, _IOLBF, 0);
    doing = mmap(NULL, 256, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (doing == MAP_FAILED) {
        printf("FAIL %s setup: no shared page for the check children\n", ISA_NAME);
        return 2;
    }

    for (int c = 0; c < N_COPIES; c++)
        copies[c] = load_copy(copy_address[c], tramp_code, sizeof tramp_code);
    broken = load_copy(BROKEN_ADDRESS, broken_code, sizeof broken_code);

    int failures = run_check("call-through", check_call_through);
    failures += run_check("dwarf-without-fde", check_dwarf_without_fde);
    for (int c = 0; c < N_COPIES; c++)
        __register_frame(copy_eh_frame[c]);
    failures += run_check("fp-chain", check_fp_chain);
    failures += run_check("dwarf-unwind", check_dwarf_unwind);
    failures += run_check("broken-detected", check_broken_detected);
    return failures != 0;
}

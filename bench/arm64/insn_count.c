/* A qemu-user TCG plugin counting the guest instructions executed: all of them, and those of TBs that start inside
 * one address range (the aarch64 kernels' text), read from the file named by the plugin's "range" argument once the
 * guest has written it ("START END" in hex, its own mapping of _kernels*.so from /proc/self/maps).  Prints
 * "insns total=N range=M" to the file named by "out" at exit.  Counting is inline and not atomic: run one thread.
 * Declares the few plugin API functions it uses (QEMU_PLUGIN_VERSION 1, qemu 7.2) since Debian ships no
 * qemu-plugin.h.  Build: gcc -shared -fPIC -O2 -o insn_count.so insn_count.c */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t total, in_range, lo, hi;
static int have_range;
static char range_path[4096], out_path[4096];

static void try_range(void) {
    FILE *f = range_path[0] ? fopen(range_path, "r") : NULL;
    if (!f) return;
    unsigned long long a, b;
    if (fscanf(f, "%llx %llx", &a, &b) == 2) {
        lo = a, hi = b, have_range = 1;
    }
    fclose(f);
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    const uint64_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    if (!have_range) try_range();
    const uint64_t pc = qemu_plugin_tb_vaddr(tb);
    if (have_range && pc >= lo && pc < hi) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                                                                    &in_range, n);
}

static void plugin_exit(qemu_plugin_id_t id, void *p) {
    (void)id, (void)p;
    FILE *f = out_path[0] ? fopen(out_path, "w") : stderr;
    if (!f) return;
    fprintf(f, "insns total=%llu range=%llu\n", (unsigned long long)total, (unsigned long long)in_range);
    if (f != stderr) fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "range=", 6) == 0) snprintf(range_path, sizeof range_path, "%s", argv[i] + 6);
        if (strncmp(argv[i], "out=", 4) == 0) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}

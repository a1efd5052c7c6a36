// koffi bindings of our shim (native/vub-shim.h) and, through it,
// libvhost-user. The libraries come from `bash native/build.sh`, which links
// its output to native/build; VUB_NATIVE_DIR overrides the location.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';

export const VUB_EV_SET_WATCH = 1;
export const VUB_EV_REMOVE_WATCH = 2;
export const VUB_EV_QUEUE_STARTED = 3;
export const VUB_EV_KICK = 4;
export const VUB_EV_SET_FEATURES = 5;
export const VUB_EV_SET_CONFIG = 6;
export const VUB_EV_PANIC = 7;
export const VUB_EV_OVERFLOW = 8;
/** Device state transfer (native/vub-state.h): QEMU asks for the state; the state has arrived; a transfer failed. */
export const VUB_EV_STATE_SAVE = 9;
export const VUB_EV_STATE_LOADED = 10;
export const VUB_EV_STATE_FAILED = 11;
/** vub_dispatch_ready() results. */
export const VUB_DISPATCH_GONE = 0;
export const VUB_DISPATCH_OK = 1;
export const VUB_DISPATCH_IDLE = 2;
export const VUB_DISPATCH_WAIT_OUT = 3;
/** sizeof(vub_event): i32 kind, a, b, pad; u64 u. */
export const VUB_EVENT_SIZE = 24;

/** Where the native libraries live. */
export function nativeDir(): string {
  if (process.env.VUB_NATIVE_DIR) return process.env.VUB_NATIVE_DIR;
  // dist/src/transport or src/transport -> package root
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'native', 'build');
    if (existsSync(join(candidate, 'libvub-shim.so'))) return candidate;
    dir = resolve(dir, '..');
  }
  throw Object.assign(
    new Error('native library libvub-shim.so not found: run `bash native/build.sh` (or `npm run setup`), or set VUB_NATIVE_DIR'),
    { code: 'EBALLOON_NATIVE' },
  );
}

function bind() {
  const lib = koffi.load(join(nativeDir(), 'libvub-shim.so'));
  const vub = koffi.opaque('vub_dev');
  const dev = koffi.pointer(vub);
  return {
    vub_new: lib.func('vub_dev *vub_new(int sock, uint16_t max_queues, uint64_t device_features, uint64_t extra_protocol_features, uint32_t config_len)'),
    vub_free: lib.func('void vub_free(vub_dev *d)'),
    vub_dispatch: lib.func('int vub_dispatch(vub_dev *d)'),
    vub_dispatch_ready: lib.func('int vub_dispatch_ready(vub_dev *d)'),
    vub_fire_watch: lib.func('void vub_fire_watch(vub_dev *d, int fd, int condition)'),
    vub_set_epoll_fd: lib.func('void vub_set_epoll_fd(vub_dev *d, int epfd)'),
    vub_next_events: lib.func('int vub_next_events(vub_dev *d, _Out_ void *out, int max)'),
    vub_last_panic: lib.func('const char *vub_last_panic(vub_dev *d)'),
    vub_features: lib.func('uint64_t vub_features(vub_dev *d)'),
    vub_protocol_features: lib.func('uint64_t vub_protocol_features(vub_dev *d)'),
    vub_broken: lib.func('int vub_broken(vub_dev *d)'),
    vub_config_write: lib.func('void vub_config_write(vub_dev *d, uint32_t off, const void *src, uint32_t len)'),
    vub_config_read: lib.func('void vub_config_read(vub_dev *d, uint32_t off, _Out_ void *dst, uint32_t len)'),
    vub_config_change: lib.func('int vub_config_change(vub_dev *d)'),
    vub_config_change_pending: lib.func('int vub_config_change_pending(vub_dev *d, _Out_ void *out)'),
    vub_queue_enable_handler: lib.func('void vub_queue_enable_handler(vub_dev *d, int qidx, int enable)'),
    vub_pop: lib.func('void *vub_pop(vub_dev *d, int qidx, _Out_ void *hdr, _Out_ void *iov, uint32_t max_iov)'),
    vub_push: lib.func('void vub_push(vub_dev *d, int qidx, void *elem, uint32_t len)'),
    vub_drop: lib.func('void vub_drop(void *elem)'),
    vub_notify: lib.func('void vub_notify(vub_dev *d, int qidx)'),
    vub_queue_started: lib.func('int vub_queue_started(vub_dev *d, int qidx)'),
    vub_queue_last_avail: lib.func('uint32_t vub_queue_last_avail(vub_dev *d, int qidx)'),
    vub_gpa_to_va: lib.func('uint64_t vub_gpa_to_va(vub_dev *d, uint64_t gpa, _Out_ void *plen)'),
    vub_ram_end: lib.func('uint64_t vub_ram_end(vub_dev *d)'),
    vub_nregions: lib.func('uint32_t vub_nregions(vub_dev *d)'),
    vub_region: lib.func('int vub_region(vub_dev *d, uint32_t i, _Out_ void *out)'),
    vub_read: lib.func('void vub_read(uint64_t hva, _Out_ void *dst, size_t len)'),
    vub_write: lib.func('void vub_write(uint64_t hva, const void *src, size_t len)'),
    vub_discard: lib.func('int64_t vub_discard(vub_dev *d, uint64_t gpa, uint64_t len)'),
    vub_discard_hva: lib.func('int64_t vub_discard_hva(vub_dev *d, uint64_t hva, uint64_t len)'),
    vub_hva_in_ram: lib.func('int vub_hva_in_ram(vub_dev *d, uint64_t hva, uint64_t len)'),
    vub_hva_page: lib.func('uint64_t vub_hva_page(vub_dev *d, uint64_t hva)'),
    vub_backed_bytes: lib.func('int64_t vub_backed_bytes(vub_dev *d)'),
    vub_bg_start: lib.func('int vub_bg_start(vub_dev *d)'),
    vub_bg_submit: lib.func('int vub_bg_submit(vub_dev *d, const void *pairs, uint32_t n)'),
    vub_bg_cancel: lib.func('int64_t vub_bg_cancel(vub_dev *d, uint64_t gpa, uint64_t len)'),
    vub_bg_try_cancel: lib.func('int64_t vub_bg_try_cancel(vub_dev *d, uint64_t gpa, uint64_t len)'),
    vub_bg_drop: lib.func('int64_t vub_bg_drop(vub_dev *d)'),
    vub_bg_resume: lib.func('void vub_bg_resume(vub_dev *d)'),
    vub_bg_export: lib.func('uint32_t vub_bg_export(vub_dev *d, _Out_ void *pairs, uint32_t max)'),
    vub_bg_collect: lib.func('int vub_bg_collect(vub_dev *d, _Out_ void *out)'),
    vub_bg_wait: lib.func('void vub_bg_wait(vub_dev *d)'),
    vub_state_save: lib.func('int vub_state_save(vub_dev *d, const void *buf, size_t len, int failed)'),
    vub_state_take: lib.func('int64_t vub_state_take(vub_dev *d, _Out_ void *dst, size_t cap)'),
    vub_state_reply: lib.func('int vub_state_reply(vub_dev *d, int failed)'),
    vub_send_fds: lib.func('int vub_send_fds(int sock, const void *buf, size_t len, const int *fds, int nfds)'),
    vub_recv_fds: lib.func('ssize_t vub_recv_fds(int sock, _Out_ void *buf, size_t len, _Out_ void *fds, int maxfds, _Out_ int *nfds)'),
    vub_listen_unix: lib.func('int vub_listen_unix(const char *path, int backlog)'),
    vub_connect_unix: lib.func('int vub_connect_unix(const char *path)'),
    devType: dev,
  };
}

export type Shim = ReturnType<typeof bind>;
let shim: Shim | undefined;

/** The shim's functions (loaded on first use). */
export function native(): Shim {
  shim ??= bind();
  return shim;
}

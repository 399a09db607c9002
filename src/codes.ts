// The native core's numbers, in one place: enum vmpk_error, the access values,
// the backend kinds, the key flag and the limits of native/include/vmpk.h.
// test/codes.test.ts parses the header and checks every one of them, so the
// two cannot drift apart. Other modules import from here; none redeclares.

/** enum vmpk_error. */
export const E_INVALID = -1;
export const E_STALE = -2;
export const E_NOMEM = -3;
export const E_UNSUPPORTED = -4;
export const E_KEYS_PINNED = -5;
export const E_BUSY = -6;
export const E_GATE_ORDER = -7;
export const E_WINDOW_FULL = -8;
export const E_NOT_REGION = -9;
export const E_GATE_DEPTH = -10;
export const E_NO_HW_KEYS = -11;
export const E_SYSTEM = -12;
export const E_TOO_MANY = -13;
export const E_FILTERED = -14;

/** enum vmpk_backend. */
export const BACKEND_AUTO = 0;
export const BACKEND_PKU = 1;
export const BACKEND_MPROTECT = 2;

/** vmpk_key_create's flag for executable keys (VMPK_KEY_EXEC). */
export const KEY_EXEC = 0x100;

/** VMPK_MAX_GATE_DEPTH: nested gates per thread. */
export const MAX_GATE_DEPTH = 32;
/** VMPK_MAX_RUNTIMES: runtimes open at once in a process. */
export const MAX_RUNTIMES = 8;
/** VMPK_MAX_NAME: bytes of a key's name kept for fault reports. */
export const MAX_NAME_BYTES = 63;
/** VMPK_MAX_WINDOW_SIZE: the arena of all windows; no window is larger. */
export const MAX_WINDOW_SIZE = 2 ** 42;
/** VMPK_MAX_KEYS: live vkeys one runtime can hold. */
export const MAX_KEYS = 2 ** 24 - 2;

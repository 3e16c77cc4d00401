;; hello: the image of the demo Deployment in hello.yaml.
;;
;; A WASI preview 1 command written by hand in WAT (skiff's runtime accepts WAT text, so no
;; compiler is needed). It prints a greeting on stdout, then runs forever: every 5 seconds it
;; blocks in poll_oneoff on the monotonic clock and prints "still here" when it wakes.
(module
  ;; fd_write(fd, iovs, iovs_len, nwritten_out) -> errno
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  ;; poll_oneoff(subscriptions, events_out, nsubscriptions, nevents_out) -> errno
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))

  ;; One 64 KiB page, laid out as:
  ;;     0  iovec {buf: u32, len: u32} for fd_write
  ;;     8  fd_write's nwritten (u32)
  ;;    12  poll_oneoff's nevents (u32)
  ;;    64  the clock subscription (subscription_t, 48 bytes)
  ;;   128  the event poll_oneoff writes back (event_t, 32 bytes)
  ;;   256  the messages
  (memory (export "memory") 1)

  (data (i32.const 256) "hello from skiff (wasm)\n") ;; 24 bytes
  (data (i32.const 288) "still here\n")              ;; 11 bytes

  ;; Writes `len` bytes at `ptr` to stdout (fd 1). Lines this short go out in one write, and a
  ;; closed stdout is no reason to stop, so the result is ignored.
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  ;; Blocks for 5 seconds. Traps if the host refuses, rather than spinning through the loop.
  (func $sleep_5s
    ;; subscription_t at 64:
    (i64.store   (i32.const 64)  (i64.const 0))             ;; userdata
    (i32.store8  (i32.const 72)  (i32.const 0))             ;; tag: 0 = clock
    (i32.store   (i32.const 80)  (i32.const 1))             ;; clock id: 1 = monotonic
    (i64.store   (i32.const 88)  (i64.const 5_000_000_000)) ;; timeout: 5 s in nanoseconds
    (i64.store   (i32.const 96)  (i64.const 0))             ;; precision
    (i32.store16 (i32.const 104) (i32.const 0))             ;; flags: 0 = timeout is relative
    (if (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 12))
      (then unreachable))
    ;; event_t at 128: error (u16) at offset 8 must be 0.
    (if (i32.load16_u (i32.const 136))
      (then unreachable)))

  (func (export "_start")
    (call $print (i32.const 256) (i32.const 24))
    (loop $forever
      (call $sleep_5s)
      (call $print (i32.const 288) (i32.const 11))
      (br $forever))))

;; hello-http: the Wasm HTTP microservice `skiff up --demo` deploys (hello.yaml).
;;
;; A wasi:http function written by hand in WAT, so that it needs no compiler: the core module of
;; a component exporting wasi:http/incoming-handler@0.2.0#handle. It imports the few wasi:http
;; and wasi:io functions it calls by their canonical-ABI names; world.wit declares them, and
;; skiff encodes module and world into a component (wit-component) when it deploys the demo.
;; Every request is answered with a plain-text greeting naming its method and path:
;;
;;   Hello from a skiff Wasm function: GET /some/path?x=1
;;
;; The node serves it with a fresh instance per request: nothing here outlives its request.
(module
  ;; wasi:http/types: resources are i32 handles; a result or option the host returns is
  ;; written at the last argument (a pointer into this memory).
  (import "wasi:http/types@0.2.0" "[method]incoming-request.method"
    (func $request_method (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-request.path-with-query"
    (func $request_path (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[resource-drop]incoming-request"
    (func $request_drop (param i32)))
  (import "wasi:http/types@0.2.0" "[constructor]fields"
    (func $fields_new (result i32)))
  (import "wasi:http/types@0.2.0" "[constructor]outgoing-response"
    (func $response_new (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-response.body"
    (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-body.write"
    (func $body_write (param i32 i32)))
  ;; finish(this, option<trailers>) -> result<_, error-code>
  (import "wasi:http/types@0.2.0" "[static]outgoing-body.finish"
    (func $body_finish (param i32 i32 i32 i32)))
  ;; set(param, result<outgoing-response, error-code>): the result flattened (its error-code
  ;; case is never sent here).
  (import "wasi:http/types@0.2.0" "[static]response-outparam.set"
    (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $stream_write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream"
    (func $stream_drop (param i32)))

  ;; One 64 KiB page to start with, laid out as:
  ;;      0  method's return area (variant tag u8; other(string): ptr, len at 4, 8)
  ;;     16  path-with-query's return area (option tag u8; ptr, len at 20, 24)
  ;;     32  outgoing-response.body's result (is_err u8; handle at 36)
  ;;     40  outgoing-body.write's result (is_err u8; handle at 44)
  ;;     48  blocking-write-and-flush's result
  ;;     64  finish's result (40 bytes)
  ;;    256  the greeting
  ;;    512  the method names, 8 bytes each, in the order of wasi:http's `method` variant
  ;;   1024  the response being built
  ;;   8192  the heap cabi_realloc hands out (the host's strings)
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))

  (data (i32.const 256) "Hello from a skiff Wasm function: ") ;; 34 bytes
  (data (i32.const 512) "GET     HEAD    POST    PUT     DELETE  CONNECT OPTIONS TRACE   PATCH   ")

  ;; The canonical ABI's allocator: a bump allocator (an instance lives for one request).
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32)
                                (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.add
                  (i32.shr_u
                    (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
                    (i32.const 16))
                  (i32.const 1)))
              (i32.const -1))
          (then unreachable))))
    (if (local.get $old_size)
      (then (memory.copy (local.get $ptr) (local.get $old) (local.get $old_size))))
    (local.get $ptr))

  ;; Appends `len` bytes at `src` to the response at `end`; returns the new end.
  (func $append (param $end i32) (param $src i32) (param $len i32) (result i32)
    (memory.copy (local.get $end) (local.get $src) (local.get $len))
    (i32.add (local.get $end) (local.get $len)))

  ;; The length of the space-padded name at `ptr` (at most 8 bytes).
  (func $name_len (param $ptr i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $n) (i32.const 8)))
        (br_if $done (i32.eq (i32.load8_u (i32.add (local.get $ptr) (local.get $n))) (i32.const 32)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $end i32)
    (local $tag i32)
    (local $response i32)
    (local $body i32)
    (local $stream i32)
    ;; "Hello from a skiff Wasm function: METHOD PATH\n"
    (local.set $end (call $append (i32.const 1024) (i32.const 256) (i32.const 34)))
    (call $request_method (local.get $request) (i32.const 0))
    (local.set $tag (i32.load8_u (i32.const 0)))
    (if (i32.lt_u (local.get $tag) (i32.const 9))
      (then
        (local.set $end
          (call $append (local.get $end)
            (i32.add (i32.const 512) (i32.mul (local.get $tag) (i32.const 8)))
            (call $name_len (i32.add (i32.const 512) (i32.mul (local.get $tag) (i32.const 8)))))))
      (else ;; other(string)
        (local.set $end
          (call $append (local.get $end) (i32.load (i32.const 4)) (i32.load (i32.const 8))))))
    (i32.store8 (local.get $end) (i32.const 32))
    (local.set $end (i32.add (local.get $end) (i32.const 1)))
    (call $request_path (local.get $request) (i32.const 16))
    (if (i32.load8_u (i32.const 16))
      (then
        (local.set $end
          (call $append (local.get $end) (i32.load (i32.const 20)) (i32.load (i32.const 24)))))
      (else
        (i32.store8 (local.get $end) (i32.const 47)) ;; "/"
        (local.set $end (i32.add (local.get $end) (i32.const 1)))))
    (i32.store8 (local.get $end) (i32.const 10)) ;; "\n"
    (local.set $end (i32.add (local.get $end) (i32.const 1)))
    (call $request_drop (local.get $request))

    ;; A 200 response with no headers, set before its body is written (the host streams it).
    (local.set $response (call $response_new (call $fields_new)))
    (call $response_body (local.get $response) (i32.const 32))
    (if (i32.load8_u (i32.const 32)) (then unreachable))
    (local.set $body (i32.load (i32.const 36)))
    (call $outparam_set (local.get $out) (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $body_write (local.get $body) (i32.const 40))
    (if (i32.load8_u (i32.const 40)) (then unreachable))
    (local.set $stream (i32.load (i32.const 44)))
    ;; The greeting is far below the 4096 bytes one blocking write may carry. A client that
    ;; went away makes it fail: nothing more to do then.
    (call $stream_write (local.get $stream) (i32.const 1024)
      (i32.sub (local.get $end) (i32.const 1024)) (i32.const 48))
    ;; A body whose stream is still open cannot be finished.
    (call $stream_drop (local.get $stream))
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 64)))
)

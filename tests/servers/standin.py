#!/usr/bin/env python3
"""standin.py: a loopback stand-in for an inference engine's weight-sync API.

Speaks one of three protocols, as doc/HOTLOAD.md describes them (and as the
engines' own sources define them; doc/HOTLOAD.md names the files):

  sglang  POST /update_weights_from_disk, GET /model_info (--generation new)
          or GET /get_weight_version (--generation old; the new generation
          answers 404 there), POST /load_lora_adapter, /unload_lora_adapter,
          GET|POST /flush_cache, POST|PUT /generate, GET /health; with
          --api-key and --admin-api-key, the key levels of SGLang's auth.py
  vllm    dev mode: POST /pause, /resume, GET /is_paused, POST /collective_rpc
          (reload_weights), /update_weight_version, GET /weight_info,
          POST /reset_prefix_cache, /v1/load_lora_adapter,
          /v1/unload_lora_adapter, GET /v1/models, POST /v1/completions,
          GET /health; an engine-side error is a 500 with vLLM's error
          envelope, as vLLM answers it; --token guards only /v1 and the
          other prefixes vLLM's authenticate.py guards
  http    POST <any path>: the ckptfs webhook body

Like the real servers it validates what it receives (wrong method, path or
body is a 4xx with a message), and for a load it reads every file under the
given path and records its sha256, so a test can check what the engine
would have loaded. GET /_test/state returns everything it saw, as JSON.

Test-only knobs: --fail-first N answers the first N protocol requests with
--status-fail (default 500; a 5xx comes as a plain-text body, the way a
proxy or uvicorn's last-resort handler answers, so it is transient), or
only the first N to --fail-path P; --refuse refuses every load the way the
engine refuses one; --delay S makes each load take S seconds; --echo-auth N
makes every 401 repeat the Authorization header it got after N bytes of
padding (a server leaking a credential back, placed where a client that
cuts messages first would cut the credential in two).
Listens on 127.0.0.1 only; stdlib only.
"""

import argparse
import hashlib
import http.server
import json
import os
import signal
import sys
import threading
import time
import urllib.parse

BASE_MODEL = "stand-in-model"


class State:
    """Everything the server saw; one lock guards all of it."""

    def __init__(self, protocol):
        # Reentrant: request logging takes it too, from inside handlers.
        self.lock = threading.RLock()
        self.protocol = protocol
        self.requests = []          # in arrival order
        self.auth_seen = []         # Authorization header of each request
        self.loads = []             # one per load request that read files
        self.active_loads = 0
        self.max_active_loads = 0
        self.overlap = False
        self.failures_left = 0
        # sglang's server_args.weight_version defaults to "default";
        # vLLM's weight_info reports null until a version is set.
        self.weight_version = "default" if protocol == "sglang" else None
        self.paused = False
        self.pauses = []            # the query of each /pause
        self.resumes = 0
        self.reloads_while_serving = 0   # vLLM reloads outside a pause
        self.cache_resets = 0
        self.loras = {}             # lora_name -> lora_path
        self.unloaded = []          # adapter names, in order
        self.warmups = 0

    def snapshot(self):
        """A deep copy, so encoding it races no handler."""
        with self.lock:
            return json.loads(json.dumps({
                "protocol": self.protocol,
                "requests": self.requests,
                "auth_seen": self.auth_seen,
                "loads": self.loads,
                "max_active_loads": self.max_active_loads,
                "overlap": self.overlap,
                "weight_version": self.weight_version,
                "paused": self.paused,
                "pauses": self.pauses,
                "resumes": self.resumes,
                "reloads_while_serving": self.reloads_while_serving,
                "cache_resets": self.cache_resets,
                "loras": self.loras,
                "unloaded": self.unloaded,
                "warmups": self.warmups,
            }))


class Reject(Exception):
    """An answer other than 200, with its JSON body."""

    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def vllm_error(status, message, err_type="BadRequestError"):
    """vLLM's ErrorResponse envelope: {"error": {message, type, param, code}}."""
    return Reject(status, {"error": {"message": message, "type": err_type,
                                     "param": None, "code": status}})


def sglang_error(status, message):
    """SGLang's ErrorResponse for validation failures (http_server.py)."""
    return Reject(status, {"object": "error", "message": message,
                           "type": "Bad Request", "param": None, "code": status})


def read_tree(path):
    """sha256 and size of every regular file under @path, by relative path."""
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ValueError(f"path must be an absolute directory: {path!r}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no such directory: {path}")
    files = {}
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            h = hashlib.sha256()
            size = 0
            with open(full, "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    size += len(chunk)
            files[rel] = {"size": size, "sha256": h.hexdigest()}
    return files


def check_fields(body, spec, error):
    """@spec: name -> (types, required). Unknown or mistyped fields -> error."""
    if not isinstance(body, dict):
        raise error("request body must be a JSON object")
    for key in body:
        if key not in spec:
            raise error(f"unexpected field {key!r}")
    for key, (types, required) in spec.items():
        if key not in body:
            if required:
                raise error(f"missing field {key!r}")
            continue
        value = body[key]
        # bool is an int in Python; keep the JSON distinction.
        ok = any(
            (t is int and isinstance(value, int) and not isinstance(value, bool))
            or (t is not int and isinstance(value, t))
            for t in types)
        if not ok:
            raise error(f"field {key!r} has the wrong type")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as uvicorn does
    server_version = "standin"

    # ---- plumbing ----

    def log_message(self, fmt, *args):
        log = self.server.logfile
        if log:
            with self.server.state.lock:
                log.write("%.3f %s\n" % (time.time(), fmt % args))
                log.flush()

    def send(self, status, body, headers=None):
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            ctype = "application/json"
        else:
            data = (body or "").encode()
            ctype = "text/plain; charset=utf-8"
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass    # the client gave up (its deadline); nothing to tell it
        return status

    def read_json(self, required=True):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            if required:
                raise self.bad("request body must be JSON")
            return None, raw
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/json":
            raise self.bad(f"Content-Type must be application/json, not {ctype!r}")
        try:
            return json.loads(raw), raw
        except ValueError:
            raise self.bad("Invalid JSON format")

    def bad(self, message, status=400):
        if self.server.state.protocol == "vllm":
            return vllm_error(status, message)
        if self.server.state.protocol == "sglang":
            return sglang_error(status, message)
        return Reject(status, {"error": message})

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, urllib.parse.parse_qs(url.query)

        if path.startswith("/_test/"):
            return self.test_endpoint(method, path)

        entry = {"method": method, "path": path, "query": url.query,
                 "auth": self.headers.get("Authorization"),
                 "t_start": time.monotonic(), "body": None, "status": None}
        with st.lock:
            st.requests.append(entry)
            st.auth_seen.append(entry["auth"])
            fail_path = self.server.fail_path
            inject = st.failures_left > 0 and fail_path in (None, path)
            if inject:
                st.failures_left -= 1
        status = None
        try:
            body, raw = self.read_json(required=False) if method != "GET" \
                else (None, b"")
            entry["body"] = body if body is not None else (raw.decode(errors="replace") or None)
            self.authenticate(method, path, entry["auth"])
            if inject:
                code = self.server.status_fail
                raise Reject(code, self.injected_body(code))
            status = self.route(method, path, query, body, entry)
        except Reject as r:
            status = self.send(r.status, r.body, r.headers)
        except Exception as e:  # a stand-in bug must still answer
            status = self.send(500, {"error": f"stand-in error: {e!r}"})
        finally:
            entry["status"] = status
            entry["t_end"] = time.monotonic()

    def injected_body(self, code):
        msg = f"stand-in: injected failure {code}"
        if code >= 500:
            return msg + "\n"     # a proxy's or uvicorn's plain text: transient
        if self.server.state.protocol == "vllm":
            return {"error": {"message": msg, "type": "BadRequestError",
                              "param": None, "code": code}}
        return {"error": msg}

    # ---- authentication, as each engine does it ----

    def unauthorized(self, status, auth):
        body = {"error": "Unauthorized" if status == 401 else "Forbidden"}
        if self.server.echo_auth and status == 401:
            # A server that leaks what it was sent, after N bytes of text.
            body["error"] = "Unauthorized: " + "x" * self.server.echo_auth + f" got {auth!r}"
        return Reject(status, body)

    def authenticate(self, method, path, auth):
        srv = self.server
        if method == "OPTIONS":
            return
        if srv.state.protocol == "vllm":
            # authenticate.py: only these prefixes are guarded; the RL and
            # dev routes (/pause, /collective_rpc, ...) are open.
            if srv.token is not None and path.startswith(
                    ("/v1", "/v2", "/inference", "/cohere")) \
                    and auth != "Bearer " + srv.token:
                raise self.unauthorized(401, auth)
            return
        if srv.state.protocol == "http":
            if srv.token is not None and auth != "Bearer " + srv.token:
                raise self.unauthorized(401, auth)
            return
        # sglang utils/auth.py: decide_request_auth()
        if path.startswith(("/health", "/ready", "/metrics")):
            return
        api_key, admin_key = srv.token, srv.admin_token
        level = SGLANG_AUTH_LEVEL.get(path, "normal")
        if level == "admin_optional":
            if admin_key is not None:
                ok = auth == "Bearer " + admin_key
            elif api_key is not None:
                ok = auth == "Bearer " + api_key
            else:
                ok = True
        else:
            ok = api_key is None or auth == "Bearer " + api_key
        if not ok:
            raise self.unauthorized(401, auth)

    def test_endpoint(self, method, path):
        st = self.server.state
        if method == "GET" and path == "/_test/state":
            return self.send(200, st.snapshot())
        return self.send(404, {"error": f"no test endpoint {method} {path}"})

    def route(self, method, path, query, body, entry):
        proto = self.server.state.protocol
        table = ROUTES[proto]
        if proto == "http":
            handler = table.get((method, "*"))
            if handler is None:
                raise Reject(405, {"error": "Method Not Allowed"})
            return handler(self, query, body, entry)
        handler = table.get((method, path))
        if handler is None:
            if any(p == path for (_, p) in table):
                raise Reject(405, {"detail": "Method Not Allowed"})
            raise Reject(404, {"detail": "Not Found"})
        return handler(self, query, body, entry)

    # ---- loads: the overlap detector lives here ----

    def load(self, path):
        """Read every file under @path, as the engine would, timing it."""
        st = self.server.state
        record = {"path": path, "t_start": time.monotonic(), "files": None}
        with st.lock:
            st.active_loads += 1
            st.max_active_loads = max(st.max_active_loads, st.active_loads)
            if st.active_loads > 1:
                st.overlap = True
        try:
            if self.server.delay:
                time.sleep(self.server.delay)
            record["files"] = read_tree(path)
            return record["files"]
        finally:
            record["t_end"] = time.monotonic()
            with st.lock:
                st.active_loads -= 1
                st.loads.append(record)

    # ---- sglang (python/sglang/srt/entrypoints/http_server.py) ----

    def sglang_update_from_disk(self, query, body, entry):
        st = self.server.state
        spec = {
            "model_path": ((str,), True),
            "load_format": ((str, type(None)), False),
            "abort_all_requests": ((bool,), False),
            "weight_version": ((str, type(None)), False),
            "is_async": ((bool,), False),
            "torch_empty_cache": ((bool,), False),
            "keep_pause": ((bool,), False),
            "recapture_cuda_graph": ((bool,), False),
            "token_step": ((int,), False),
            "flush_cache": ((bool,), False),
            "manifest": ((dict, type(None)), False),
            "rid": ((str, list, type(None)), False),    # from BaseReq
        }
        check_fields(body, spec, self.bad)

        def refuse(msg):
            return Reject(400, {"success": False, "message": msg,
                                "num_paused_requests": 0})

        if self.server.refuse:
            raise refuse("Failed to update weights: stand-in refuses this model")
        try:
            self.load(body["model_path"])
        except (OSError, ValueError) as e:
            raise refuse(f"Failed to get weights iterator: {e}")
        message = "Succeeded to update model weights."
        version = body.get("weight_version")
        with st.lock:
            if version is not None:
                st.weight_version = version
            if body.get("flush_cache", True):
                st.cache_resets += 1
        if version is not None:
            message += f" Weight version updated to {version}."
        return self.send(200, {"success": True, "message": message,
                               "num_paused_requests": 0})

    def sglang_weight_version(self, query, body, entry):
        if self.server.generation == "new":
            # Newer trees: a deprecated alias that points at /model_info.
            raise Reject(404, {"detail": "/get_weight_version was removed; "
                                         "use GET /model_info (weight_version)"})
        with self.server.state.lock:
            version = self.server.state.weight_version
        return self.send(200, {"weight_version": version})

    def sglang_model_info(self, query, body, entry):
        if self.server.generation == "old":
            raise Reject(404, {"detail": "Not Found"})
        with self.server.state.lock:
            version = self.server.state.weight_version
        return self.send(200, {"model_path": "/models/" + BASE_MODEL,
                               "tokenizer_path": "/models/" + BASE_MODEL,
                               "is_generation": True,
                               "weight_version": version})

    def sglang_lora_reply(self, status, success, message=""):
        with self.server.state.lock:
            loaded = dict(self.server.state.loras)
        return Reject(status, {"success": success, "error_message": message,
                               "loaded_adapters": loaded})

    def sglang_load_lora(self, query, body, entry):
        st = self.server.state
        check_fields(body, {"lora_name": ((str,), True),
                            "lora_path": ((str,), True),
                            "pinned": ((bool,), False),
                            "lora_id": ((str, type(None)), False),
                            "rid": ((str, list, type(None)), False)}, self.bad)
        name, path = body["lora_name"], body["lora_path"]
        with st.lock:
            if name in st.loras:
                raise self.sglang_lora_reply(
                    400, False, f"Failed to load LoRA adapter {name}: "
                                "an adapter with this name is already loaded.")
        if self.server.refuse:
            raise self.sglang_lora_reply(400, False, "stand-in refuses this adapter")
        try:
            self.load(path)
        except (OSError, ValueError) as e:
            raise self.sglang_lora_reply(400, False, f"Failed to load LoRA adapter {name}: {e}")
        with st.lock:
            st.loras[name] = path
        r = self.sglang_lora_reply(200, True)
        return self.send(r.status, r.body)

    def sglang_unload_lora(self, query, body, entry):
        st = self.server.state
        check_fields(body, {"lora_name": ((str,), True),
                            "lora_id": ((str, type(None)), False),
                            "rid": ((str, list, type(None)), False)}, self.bad)
        name = body["lora_name"]
        with st.lock:
            if name not in st.loras:
                raise self.sglang_lora_reply(
                    400, False, f"LoRA adapter {name} is not loaded.")
            del st.loras[name]
            st.unloaded.append(name)
        r = self.sglang_lora_reply(200, True)
        return self.send(r.status, r.body)

    def sglang_flush_cache(self, query, body, entry):
        with self.server.state.lock:
            self.server.state.cache_resets += 1
        return self.send(200, "Cache flushed.\nPlease check backend logs for more details. "
                              "(When there are running or waiting requests, the operation "
                              "will not be performed.)\n")

    def sglang_generate(self, query, body, entry):
        check_fields(body, {"text": ((str, list), False),
                            "input_ids": ((list,), False),
                            "sampling_params": ((dict,), False),
                            "stream": ((bool,), False),
                            "lora_path": ((str, list, type(None)), False),
                            "rid": ((str,), False)}, self.bad)
        if "text" not in body and "input_ids" not in body:
            raise self.bad("Either text or input_ids should be provided.")
        lora = body.get("lora_path")
        if isinstance(lora, str):
            with self.server.state.lock:
                if lora not in self.server.state.loras:
                    raise self.bad(f"LoRA adapter {lora} is not loaded")
        sp = body.get("sampling_params", {})
        n = sp.get("max_new_tokens", 128)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise self.bad("max_new_tokens must be a non-negative integer")
        with self.server.state.lock:
            self.server.state.warmups += 1
        return self.send(200, {"text": " world", "meta_info": {
            "id": "standin-0", "prompt_tokens": 1, "completion_tokens": min(n, 1),
            "finish_reason": {"type": "length", "length": min(n, 1)}}})

    def health(self, query, body, entry):
        return self.send(200, "")

    # ---- vllm (vllm/entrypoints/serve/dev/rlhf/api_router.py et al.) ----

    def vllm_engine_error(self, message):
        """An exception raised in the engine: vLLM's handler makes it a 500."""
        return vllm_error(500, message, "InternalServerError")

    def vllm_pause(self, query, body, entry):
        st = self.server.state
        for key in query:
            if key not in ("mode", "wait_for_inflight_requests", "clear_cache"):
                raise vllm_error(400, f"unexpected query parameter {key!r}")
        mode = query.get("mode", ["abort"])[-1]
        if mode not in ("abort", "wait", "keep"):
            raise vllm_error(400, f"Input should be 'abort', 'wait' or 'keep': {mode!r}")
        if body is not None:
            raise vllm_error(400, "pause takes no body")
        with st.lock:
            st.paused = True
            st.pauses.append(entry["query"])
        return self.send(200, {"status": "paused"})

    def vllm_resume(self, query, body, entry):
        with self.server.state.lock:
            self.server.state.paused = False
            self.server.state.resumes += 1
        return self.send(200, {"status": "resumed"})

    def vllm_is_paused(self, query, body, entry):
        with self.server.state.lock:
            return self.send(200, {"is_paused": self.server.state.paused})

    def vllm_collective_rpc(self, query, body, entry):
        st = self.server.state
        if not isinstance(body, dict) or body.get("method") is None:
            raise vllm_error(400, "Missing 'method' in request body")
        check_fields(body, {"method": ((str,), True), "args": ((list,), False),
                            "kwargs": ((dict,), False),
                            "timeout": ((int, float, type(None)), False)},
                     lambda m: vllm_error(400, m))
        if body["method"] != "reload_weights":
            raise self.vllm_engine_error(
                f"'Worker' object has no attribute {body['method']!r}")
        kwargs = body.get("kwargs", {})
        if set(kwargs) - {"weights_path"} or body.get("args"):
            raise self.vllm_engine_error(
                "reload_weights() got an unexpected argument: "
                f"{sorted(set(kwargs) - {'weights_path'}) or body.get('args')}")
        path = kwargs.get("weights_path")
        # The engine's ValueError reaches the API server as a plain
        # exception: HTTP 500 with the error envelope, not 400.
        try:
            if not isinstance(path, str) or not os.path.isabs(path):
                raise ValueError(f"weights_path must be an absolute directory: {path!r}")
            if not os.path.isdir(path):
                raise ValueError(f"Cannot find any model weights with `{path}`")
            if not any(e.name.endswith(".safetensors") and e.is_file()
                       for e in os.scandir(path)):
                raise ValueError(f"Cannot find any safetensors model weights with `{path}`")
            if self.server.refuse:
                raise ValueError("stand-in refuses these weights: shape mismatch "
                                 "for model.layers.0.weight")
            with st.lock:
                if not st.paused:
                    st.reloads_while_serving += 1
            self.load(path)
        except (ValueError, OSError) as e:
            raise self.vllm_engine_error(str(e))
        return self.send(200, {"results": [None]})

    def vllm_update_weight_version(self, query, body, entry):
        st = self.server.state
        # new_version: Annotated[str, Body(embed=True)]; abort_all_requests
        # on newer trees.
        check_fields(body, {"new_version": ((str,), True),
                            "abort_all_requests": ((bool,), False)},
                     lambda m: vllm_error(400, m))
        with st.lock:
            st.weight_version = body["new_version"]
        return self.send(200, {"success": True, "new_version": body["new_version"]})

    def vllm_weight_info(self, query, body, entry):
        with self.server.state.lock:
            version = self.server.state.weight_version
        return self.send(200, {"weight_version": version})

    def vllm_reset_prefix_cache(self, query, body, entry):
        for key in query:
            if key not in ("reset_running_requests", "reset_external"):
                raise vllm_error(400, f"unexpected query parameter {key!r}")
        if body is not None:
            raise vllm_error(400, "reset_prefix_cache takes no body")
        with self.server.state.lock:
            self.server.state.cache_resets += 1
        return self.send(200, {"success": True})

    def vllm_load_lora(self, query, body, entry):
        st = self.server.state
        check_fields(body, {"lora_name": ((str,), True),
                            "lora_path": ((str,), True),
                            "load_inplace": ((bool,), False),
                            "is_3d_lora_weight": ((bool,), False)},
                     lambda m: vllm_error(400, m))
        name, path = body["lora_name"], body["lora_path"]
        if not name or not path:
            raise vllm_error(400, "Both 'lora_name' and 'lora_path' must be provided.",
                             "InvalidUserInput")
        with st.lock:
            if name in st.loras and not body.get("load_inplace", False):
                raise vllm_error(400, f"The lora adapter '{name}' has already been "
                                      "loaded. If you want to load the adapter in "
                                      "place, set 'load_inplace' to True.",
                                 "InvalidUserInput")
        if self.server.refuse:
            raise vllm_error(400, "stand-in refuses this adapter")
        try:
            self.load(path)
        except (OSError, ValueError):
            raise vllm_error(404, f"Loading lora {name} failed: No adapter found "
                                  f"for {path}", "NotFoundError")
        with st.lock:
            st.loras[name] = path
        return self.send(200, f"Success: LoRA adapter '{name}' added successfully.")

    def vllm_unload_lora(self, query, body, entry):
        st = self.server.state
        check_fields(body, {"lora_name": ((str,), True),
                            "lora_int_id": ((int, type(None)), False)},
                     lambda m: vllm_error(400, m))
        name = body["lora_name"]
        with st.lock:
            if name not in st.loras:
                raise vllm_error(404, f"The lora adapter '{name}' cannot be found.",
                                 "NotFoundError")
            del st.loras[name]
            st.unloaded.append(name)
        return self.send(200, f"Success: LoRA adapter '{name}' removed successfully.")

    def vllm_models(self, query, body, entry):
        with self.server.state.lock:
            loras = dict(self.server.state.loras)
        data = [{"id": BASE_MODEL, "object": "model", "owned_by": "vllm",
                 "root": "/models/" + BASE_MODEL, "parent": None}]
        data += [{"id": n, "object": "model", "owned_by": "vllm", "root": p,
                  "parent": BASE_MODEL} for n, p in loras.items()]
        return self.send(200, {"object": "list", "data": data})

    def vllm_completions(self, query, body, entry):
        st = self.server.state
        check_fields(body, {"model": ((str, type(None)), False),
                            "prompt": ((str, list), True),
                            "max_tokens": ((int, type(None)), False),
                            "temperature": ((int, float, type(None)), False),
                            "stream": ((bool,), False)},
                     lambda m: vllm_error(400, m))
        model = body.get("model") or BASE_MODEL
        with st.lock:
            known = model == BASE_MODEL or model in st.loras
        if not known:
            raise vllm_error(404, f"The model `{model}` does not exist.", "NotFoundError")
        with st.lock:
            st.warmups += 1
        return self.send(200, {
            "id": "cmpl-standin", "object": "text_completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": " world", "logprobs": None,
                         "finish_reason": "length", "stop_reason": None}],
            "usage": {"prompt_tokens": 1, "total_tokens": 2, "completion_tokens": 1}})

    # ---- http: the ckptfs webhook (doc/HOTLOAD.md) ----

    def http_hook(self, query, body, entry):
        error = lambda m: Reject(400, {"error": m})
        str_or_null = (str, type(None))
        check_fields(body, {"deployment": (str_or_null, True),
                            "job": (str_or_null, True),
                            "name": ((str,), True),
                            "snapshot": ((str,), True),
                            "kind": ((str,), True),
                            "base": (str_or_null, True),
                            "path": ((str,), True),
                            "files": ((list,), True)}, error)
        if body["kind"] not in ("base", "delta", "lora"):
            raise error(f"kind must be base, delta or lora, not {body['kind']!r}")
        if (body["kind"] == "delta") != (body["base"] is not None):
            raise error("base is set exactly when kind is delta")
        declared = {}
        for f in body["files"]:
            check_fields(f, {"path": ((str,), True), "size": ((int,), True),
                             "sha256": ((str,), True)}, error)
            declared[f["path"]] = {"size": f["size"], "sha256": f["sha256"]}
        if self.server.refuse:
            raise error("stand-in refuses this checkpoint")
        try:
            found = self.load(body["path"])
        except (OSError, ValueError) as e:
            raise error(str(e))
        if found != declared:
            raise error("files listed do not match the files under path")
        with self.server.state.lock:
            self.server.state.weight_version = body["snapshot"]
        return self.send(200, {"ok": True, "snapshot": body["snapshot"]})


# SGLang's @auth_level(AuthLevel.ADMIN_OPTIONAL) routes among those served;
# every other route is "normal".
SGLANG_AUTH_LEVEL = {
    "/update_weights_from_disk": "admin_optional",
    "/load_lora_adapter": "admin_optional",
    "/unload_lora_adapter": "admin_optional",
    "/flush_cache": "admin_optional",
}

ROUTES = {
    "sglang": {
        ("POST", "/update_weights_from_disk"): Handler.sglang_update_from_disk,
        ("GET", "/get_weight_version"): Handler.sglang_weight_version,
        ("GET", "/model_info"): Handler.sglang_model_info,
        ("POST", "/load_lora_adapter"): Handler.sglang_load_lora,
        ("POST", "/unload_lora_adapter"): Handler.sglang_unload_lora,
        ("GET", "/flush_cache"): Handler.sglang_flush_cache,
        ("POST", "/flush_cache"): Handler.sglang_flush_cache,
        ("POST", "/generate"): Handler.sglang_generate,
        ("PUT", "/generate"): Handler.sglang_generate,
        ("GET", "/health"): Handler.health,
    },
    "vllm": {
        ("POST", "/pause"): Handler.vllm_pause,
        ("POST", "/resume"): Handler.vllm_resume,
        ("GET", "/is_paused"): Handler.vllm_is_paused,
        ("POST", "/collective_rpc"): Handler.vllm_collective_rpc,
        ("POST", "/update_weight_version"): Handler.vllm_update_weight_version,
        ("GET", "/weight_info"): Handler.vllm_weight_info,
        ("POST", "/reset_prefix_cache"): Handler.vllm_reset_prefix_cache,
        ("POST", "/v1/load_lora_adapter"): Handler.vllm_load_lora,
        ("POST", "/v1/unload_lora_adapter"): Handler.vllm_unload_lora,
        ("GET", "/v1/models"): Handler.vllm_models,
        ("POST", "/v1/completions"): Handler.vllm_completions,
        ("GET", "/health"): Handler.health,
    },
    "http": {
        ("POST", "*"): Handler.http_hook,
    },
}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", required=True, choices=sorted(ROUTES))
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--portfile", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--status-fail", type=int, default=500)
    ap.add_argument("--fail-path")
    ap.add_argument("--refuse", action="store_true")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--token", "--api-key", dest="token")
    ap.add_argument("--admin-api-key", dest="admin_token")
    ap.add_argument("--generation", choices=("new", "old"), default="new",
                    help="sglang: new serves /model_info and answers 404 on "
                         "/get_weight_version; old the other way round")
    ap.add_argument("--echo-auth", type=int, default=0, metavar="N")
    ap.add_argument("--log")
    args = ap.parse_args()

    srv = Server(("127.0.0.1", args.port), Handler)
    srv.state = State(args.protocol)
    srv.state.failures_left = args.fail_first
    srv.status_fail = args.status_fail
    srv.fail_path = args.fail_path
    srv.refuse = args.refuse
    srv.delay = args.delay
    srv.token = args.token
    srv.admin_token = args.admin_token
    srv.generation = args.generation
    srv.echo_auth = args.echo_auth
    srv.logfile = open(args.log, "a") if args.log else None

    # Written whole then renamed, so a reader never sees half a number.
    tmp = args.portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.portfile)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever(poll_interval=0.05)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()

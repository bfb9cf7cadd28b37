//! `runtime = "lambda"`: the Lambda Runtime API (2018-06-01), so Lambda's own runtime
//! interface clients run handlers unchanged: npm `aws-lambda-ric`, PyPI `awslambdaric`, the
//! Rust `lambda_runtime` crate, or any custom runtime.
//!
//! Each handler process is a *sandbox*: a process started with Lambda's environment
//! (`AWS_LAMBDA_RUNTIME_API`, `_HANDLER`, `LAMBDA_TASK_ROOT`, ...) and an HTTP listener of
//! its own on loopback, so sluice always knows which process holds which invocation. A
//! sandbox handles one invocation at a time and is reused while it lives (warm starts);
//! at most one sandbox per batch in flight, so `maximum_concurrency` bounds them.
//!
//! - `GET  /2018-06-01/runtime/invocation/next` waits for an invocation and answers the
//!   event with `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`
//!   and `-Trace-Id`;
//! - `POST .../invocation/{id}/response` (at most 6 MB, else 413) and `.../{id}/error`
//!   complete it (202);
//! - `POST /2018-06-01/runtime/init/error` reports a handler that cannot start.
//!
//! A process that exits, reports an init error, or holds an invocation past its deadline is
//! killed and forgotten: its invocation fails (`Runtime.ExitError`, `Sandbox.Timedout`) and
//! the next invocation starts a fresh process. Its stdout and stderr go to the function's log.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::{Function, Runtime};
use crate::handler::{Failure, FailureKind};
use crate::limits::PAYLOAD_BYTES_MAX;
use crate::log::{utc_timestamp, FunctionLog};

/// The largest error report read from a handler: Lambda's payload limit.
const ERROR_BODY_BYTES_MAX: usize = PAYLOAD_BYTES_MAX;

/// What a completed invocation gives back.
type Reply = Result<Vec<u8>, Failure>;

/// One invocation handed to a sandbox.
struct Invocation {
    request_id: String,
    event: Bytes,
    deadline_ms: u64,
    reply: oneshot::Sender<Reply>,
}

/// The Runtime API of one function: its sandboxes.
pub struct RuntimeApi {
    spec: Arc<Spec>,
    idle: Mutex<Vec<Arc<Sandbox>>>,
}

/// How to start a sandbox.
struct Spec {
    function_arn: String,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    code_dir: PathBuf,
    log: Arc<FunctionLog>,
}

/// A handler process and its API listener.
struct Sandbox {
    id: String,
    addr: SocketAddr,
    next: mpsc::Sender<Invocation>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// What the HTTP handlers and the process watcher share.
struct Shared {
    spec: Arc<Spec>,
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    current: Mutex<Option<(String, oneshot::Sender<Reply>)>>,
    dead: std::sync::atomic::AtomicBool,
    kill: Notify,
    init_error: Mutex<Option<String>>,
}

impl RuntimeApi {
    /// The Runtime API of `function` (a `lambda` runtime); no process starts until the
    /// first invocation.
    pub fn new(function: &Function, log: Arc<FunctionLog>) -> RuntimeApi {
        let (command, handler) = match &function.runtime {
            Runtime::Lambda { command, handler } => (command.clone(), handler.clone()),
            _ => (Vec::new(), String::new()),
        };
        let code_dir =
            std::fs::canonicalize(&function.code_dir).unwrap_or(function.code_dir.clone());
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let mut environment = function.environment.clone();
        // Lambda's reserved variables win over the function's own, as in Lambda.
        let reserved = [
            ("_HANDLER", handler),
            ("LAMBDA_TASK_ROOT", code_dir.display().to_string()),
            ("LAMBDA_RUNTIME_DIR", code_dir.display().to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", function.memory_mb.to_string()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", function.name)),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_REGION", region.clone()),
            ("AWS_DEFAULT_REGION", region.clone()),
            ("TZ", ":UTC".into()),
        ];
        for (key, value) in reserved {
            environment.insert(key.to_string(), value);
        }
        environment.entry("LANG".into()).or_insert_with(|| "en_US.UTF-8".into());
        RuntimeApi {
            spec: Arc::new(Spec {
                function_arn: format!(
                    "arn:aws:lambda:{region}:000000000000:function:{}",
                    function.name
                ),
                command,
                environment,
                code_dir,
                log,
            }),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Invokes a warm sandbox, or a new one, with `event`.
    pub async fn invoke(&self, request_id: &str, event: Bytes, deadline: Instant) -> Reply {
        let warm = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|s| !s.is_dead());
            idle.pop()
        };
        let sandbox = match warm {
            Some(sandbox) => sandbox,
            None => Arc::new(self.start().await?),
        };
        let (reply, replied) = oneshot::channel();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let deadline_ms = now_ms() + remaining.as_millis() as u64;
        let invocation =
            Invocation { request_id: request_id.to_string(), event, deadline_ms, reply };
        if sandbox.next.send(invocation).await.is_err() {
            return Err(crashed("the runtime process is gone"));
        }
        match tokio::time::timeout(remaining, replied).await {
            Ok(Ok(result)) => {
                if !sandbox.is_dead() {
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(sandbox);
                }
                result
            }
            Ok(Err(_)) => Err(crashed("the runtime process exited without answering")),
            Err(_) => {
                sandbox.kill();
                Err(Failure {
                    kind: FailureKind::Timeout,
                    message: format!("Task timed out after {:.2} seconds", remaining.as_secs_f64()),
                })
            }
        }
    }

    /// Starts a sandbox: binds its listener, serves the API, starts the process.
    async fn start(&self) -> Result<Sandbox, Failure> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| crashed(&format!("cannot bind a Runtime API port: {e}")))?;
        let addr = listener.local_addr().map_err(|e| crashed(&e.to_string()))?;
        let (next, queue) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            spec: Arc::clone(&self.spec),
            queue: tokio::sync::Mutex::new(queue),
            current: Mutex::new(None),
            dead: std::sync::atomic::AtomicBool::new(false),
            kill: Notify::new(),
            init_error: Mutex::new(None),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(invocation_response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sandbox = Sandbox { id, addr, next, shared, server };
        sandbox.spawn_process()?;
        Ok(sandbox)
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        for sandbox in self.idle.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            sandbox.kill();
        }
    }
}

impl Sandbox {
    fn is_dead(&self) -> bool {
        self.shared.dead.load(std::sync::atomic::Ordering::Acquire)
    }

    fn kill(&self) {
        self.shared.dead.store(true, std::sync::atomic::Ordering::Release);
        self.shared.kill.notify_one();
    }

    /// Starts the handler process and a task that watches it.
    fn spawn_process(&self) -> Result<(), Failure> {
        let spec = &self.shared.spec;
        let (program, args) =
            spec.command.split_first().ok_or_else(|| crashed("the function has no command"))?;
        let stream = format!(
            "{}/[$LATEST]{}",
            utc_timestamp(SystemTime::now()).get(..10).unwrap_or(""),
            self.id
        );
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .current_dir(&spec.code_dir)
            .envs(&spec.environment)
            .env("AWS_LAMBDA_RUNTIME_API", self.addr.to_string())
            .env("AWS_LAMBDA_LOG_STREAM_NAME", stream)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| crashed(&format!("cannot start {program:?}: {e}")))?;
        spec.log.line(&format!("INIT_START Runtime API {} sandbox {}", self.addr, self.id));
        for pipe in
            [child.stdout.take().map(boxed), child.stderr.take().map(boxed)].into_iter().flatten()
        {
            let log = Arc::clone(&spec.log);
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.line(&line);
                }
            });
        }
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                () = shared.kill.notified() => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    "killed by sluice".to_string()
                }
            };
            shared.dead.store(true, std::sync::atomic::Ordering::Release);
            let init = shared.init_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let message = match init {
                Some(init) => format!("Runtime.InitError: {init} (the runtime process: {status})"),
                None => format!("the runtime process exited ({status})"),
            };
            shared.spec.log.line(&format!("RUNTIME_EXIT {message}"));
            if let Some((_, reply)) =
                shared.current.lock().unwrap_or_else(|p| p.into_inner()).take()
            {
                let _ = reply.send(Err(crashed(&message)));
            }
            let mut queue = shared.queue.lock().await;
            while let Ok(waiting) = queue.try_recv() {
                let _ = waiting.reply.send(Err(crashed(&message)));
            }
            queue.close();
        });
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
        self.server.abort();
    }
}

fn boxed(pipe: impl AsyncRead + Send + Unpin + 'static) -> Box<dyn AsyncRead + Send + Unpin> {
    Box::new(pipe)
}

fn crashed(message: &str) -> Failure {
    Failure { kind: FailureKind::Crashed, message: message.to_string() }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// `GET /runtime/invocation/next`: the next event, with Lambda's headers.
async fn next_invocation(State(shared): State<Arc<Shared>>) -> Response {
    let invocation = {
        let mut queue = shared.queue.lock().await;
        queue.recv().await
    };
    let Some(invocation) = invocation else {
        return error_response(StatusCode::GONE, "SandboxStopped", "the sandbox is stopping");
    };
    let Invocation { request_id, event, deadline_ms, reply } = invocation;
    *shared.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((request_id.clone(), reply));
    let trace = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        now_ms() / 1000,
        &uuid::Uuid::new_v4().simple().to_string()[..24],
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", request_id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", shared.spec.function_arn.clone());
    set("lambda-runtime-trace-id", trace);
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, Body::from(event)).into_response()
}

/// `POST /runtime/invocation/{id}/response`.
async fn invocation_response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let Some(reply) = take_current(&shared, &id) else {
        return unknown_request(&id);
    };
    match to_bytes(body, PAYLOAD_BYTES_MAX).await {
        Ok(bytes) => {
            let _ = reply.send(Ok(bytes.to_vec()));
            accepted()
        }
        Err(_) => {
            let message =
                format!("Exceeded maximum allowed payload size ({PAYLOAD_BYTES_MAX} bytes).");
            let _ = reply.send(Err(Failure {
                kind: FailureKind::ResponseTooLarge,
                message: message.clone(),
            }));
            error_response(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &message)
        }
    }
}

/// `POST /runtime/invocation/{id}/error`: the handler threw.
async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(reply) = take_current(&shared, &id) else {
        return unknown_request(&id);
    };
    let report = to_bytes(body, ERROR_BODY_BYTES_MAX).await.unwrap_or_default();
    let message = describe_error(&headers, &report);
    let _ = reply.send(Err(Failure { kind: FailureKind::Function, message }));
    accepted()
}

/// `POST /runtime/init/error`: the handler cannot start; the process is stopped.
async fn init_error(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let report = to_bytes(body, ERROR_BODY_BYTES_MAX).await.unwrap_or_default();
    let message = describe_error(&headers, &report);
    *shared.init_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    shared.dead.store(true, std::sync::atomic::Ordering::Release);
    shared.kill.notify_one();
    accepted()
}

/// `errorType: errorMessage` from Lambda's error document (or what the header says).
fn describe_error(headers: &HeaderMap, report: &Bytes) -> String {
    let parsed: serde_json::Value = serde_json::from_slice(report).unwrap_or_default();
    let kind = parsed
        .get("errorType")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "Unhandled".into());
    let message = parsed.get("errorMessage").and_then(|v| v.as_str()).unwrap_or_default();
    format!("{kind}: {message}")
}

fn take_current(shared: &Shared, id: &str) -> Option<oneshot::Sender<Reply>> {
    let mut current = shared.current.lock().unwrap_or_else(|p| p.into_inner());
    match current.take() {
        Some((current_id, reply)) if current_id == id => Some(reply),
        other => {
            *current = other;
            None
        }
    }
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, [("content-type", "application/json")], "{\"status\":\"OK\"}")
        .into_response()
}

fn unknown_request(id: &str) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        &format!("no invocation {id} is in progress"),
    )
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"errorType": kind, "errorMessage": message}).to_string();
    (status, [("content-type", "application/json")], body).into_response()
}

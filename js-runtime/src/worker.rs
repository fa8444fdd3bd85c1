//! A [`Worker`]: one isolate running one function version on a thread of its own.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use bundler::Bundle;
use deno_core::{v8, JsRuntime, PollEventLoopOptions, RuntimeOptions};
use tokio::sync::{mpsc, oneshot};

use crate::ext::{self, Failure, Host, HttpResponse, Invocation, LogSink, Outcome};
use crate::loader::{module_url, BundleLoader};

/// What a worker runs and how: plain data.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The function's name, as in logs.
    pub name: Arc<str>,
    pub bundle: Arc<Bundle>,
    /// `env` of the function: its vars (and later its secrets).
    pub vars: BTreeMap<String, String>,
    /// Allow `eval` and `new Function`.
    pub allow_eval: bool,
}

/// The services a worker uses, injected so tests and the node choose them.
#[derive(Clone)]
pub struct WorkerServices {
    pub log_sink: Arc<dyn LogSink>,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The function's module failed to load or threw while evaluating; the message holds the
    /// error and its stack.
    #[error("{0}")]
    Module(String),
    /// The thread could not be started.
    #[error("cannot start the isolate thread")]
    Thread(#[source] std::io::Error),
}

/// Starts isolates.
pub struct Worker;

/// A cloneable handle that sends invocations to a running worker. The worker stops when
/// every handle is dropped and its in-flight invocations are done.
#[derive(Clone)]
pub struct WorkerHandle {
    inbox: mpsc::UnboundedSender<Invocation>,
}

impl Worker {
    /// Starts a worker: a thread, an isolate from the snapshot, the function's modules loaded
    /// and evaluated. Resolves once the function is ready for invocations.
    pub async fn start(
        options: WorkerOptions,
        services: WorkerServices,
    ) -> Result<WorkerHandle, StartError> {
        let (inbox, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("isolate-{}", options.name))
            .spawn(move || run_thread(options, services, rx, ready_tx))
            .map_err(StartError::Thread)?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(WorkerHandle { inbox }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StartError::Module(
                "the isolate stopped while starting".into(),
            )),
        }
    }
}

impl WorkerHandle {
    /// Runs one HTTP invocation; resolves with the response head as soon as the function
    /// answers (a streamed body follows through [`crate::ResponseBody::Stream`]).
    pub async fn invoke(
        &self,
        invocation_id: Arc<str>,
        request: http::Request<crate::RequestBody>,
    ) -> Result<HttpResponse, Failure> {
        let (reply, response) = oneshot::channel();
        let gone = || Failure {
            outcome: Outcome::Internal,
            message: "the isolate stopped".into(),
        };
        self.inbox
            .send(Invocation {
                invocation_id,
                request,
                reply,
            })
            .map_err(|_| gone())?;
        response.await.map_err(|_| gone())?
    }
}

fn run_thread(
    options: WorkerOptions,
    services: WorkerServices,
    inbox: mpsc::UnboundedReceiver<Invocation>,
    ready: oneshot::Sender<Result<(), StartError>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(StartError::Thread(e)));
            return;
        }
    };
    rt.block_on(async move {
        let mut js = match boot(&options, &services, inbox).await {
            Ok(js) => js,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        // Runs until every handle is gone and every invocation has finished.
        let result = js.run_event_loop(PollEventLoopOptions::default()).await;
        let state = js.op_state();
        let mut state = state.borrow_mut();
        let host = state.borrow_mut::<Host>();
        if let Err(e) = result {
            host.fail_all(Outcome::Internal, &e.to_string());
        }
    });
}

/// Takes the runtime's start function out of the global scope and removes every global that
/// belongs to the host rather than to the function.
const HIDE_HOST: &str = "(() => {
  const start = globalThis.__isolaStart;
  delete globalThis.__isolaStart;
  delete globalThis.__bootstrap;
  delete globalThis.Deno;
  return start;
})()";

/// Creates the isolate from the snapshot, loads and evaluates the function, and starts its
/// request loop.
async fn boot(
    options: &WorkerOptions,
    services: &WorkerServices,
    inbox: mpsc::UnboundedReceiver<Invocation>,
) -> Result<JsRuntime, StartError> {
    let mut js = JsRuntime::new(RuntimeOptions {
        startup_snapshot: Some(crate::SNAPSHOT),
        extensions: ext::extensions(),
        module_loader: Some(Rc::new(BundleLoader {
            bundle: options.bundle.clone(),
        })),
        ..Default::default()
    });
    {
        let state = js.op_state();
        let mut state = state.borrow_mut();
        state.put(Host::new(
            options.name.clone(),
            services.log_sink.clone(),
            inbox,
        ));
        state.put(outbound_permissions());
    }
    let module_error = |e: deno_core::error::CoreError| StartError::Module(e.to_string());
    let start = {
        let value = js
            .execute_script("isola:bootstrap", HIDE_HOST)
            .map_err(|e| StartError::Module(e.to_string()))?;
        deno_core::scope!(scope, &mut js);
        let local = v8::Local::new(scope, value);
        let function = v8::Local::<v8::Function>::try_from(local)
            .map_err(|_| StartError::Module("the runtime's start function is missing".into()))?;
        if !options.allow_eval {
            scope
                .get_current_context()
                .set_allow_generation_from_strings(false);
        }
        v8::Global::new(scope, function)
    };
    let main = module_url(&options.bundle.manifest().entry);
    let id = js.load_main_es_module(&main).await.map_err(module_error)?;
    let evaluated = js.mod_evaluate(id);
    js.run_event_loop(PollEventLoopOptions::default())
        .await
        .map_err(module_error)?;
    evaluated.await.map_err(module_error)?;
    let namespace = js.get_module_namespace(id).map_err(module_error)?;
    let vars = {
        deno_core::scope!(scope, &mut js);
        let object = v8::Object::new(scope);
        for (key, value) in &options.vars {
            let (Some(k), Some(v)) = (v8::String::new(scope, key), v8::String::new(scope, value))
            else {
                return Err(StartError::Module(format!("var `{key}` is too long")));
            };
            object.set(scope, k.into(), v.into());
        }
        v8::Global::new(scope, v8::Local::<v8::Value>::from(object))
    };
    let namespace = {
        deno_core::scope!(scope, &mut js);
        let local = v8::Local::new(scope, namespace);
        v8::Global::new(scope, v8::Local::<v8::Value>::from(local))
    };
    js.call_with_args(&start, &[namespace, vars])
        .await
        .map_err(|e| StartError::Module(e.to_string()))?;
    Ok(js)
}

/// The permissions deno_fetch checks before an outbound request. Every destination is
/// allowed for now; the private-address policy replaces this.
fn outbound_permissions() -> deno_permissions::PermissionsContainer {
    let parser =
        deno_permissions::RuntimePermissionDescriptorParser::new(sys_traits::impls::RealSys);
    deno_permissions::PermissionsContainer::allow_all(Arc::new(parser))
}

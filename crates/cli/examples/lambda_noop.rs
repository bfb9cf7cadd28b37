//! A no-op consumer function on the official Rust runtime, `lambda_runtime`: it reads the
//! event without building anything from it (`IgnoredAny`) and answers `null`. `sluice bench
//! functions` measures the Lambda Runtime API with it, so what is timed is sluice's side of
//! an invocation, not a handler's work.
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::de::IgnoredAny;

async fn handle(_event: LambdaEvent<IgnoredAny>) -> Result<(), Error> {
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}

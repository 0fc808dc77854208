//! `wfdb`: the workflowdb daemon (`wfdb serve`) and its command-line client (every other verb).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wfdb: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(cli::run(args));
    // A blocking task can be stuck for good in the store (sled 0.34 waits forever in a flush
    // after a failed write): never let one keep a daemon that stopped from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

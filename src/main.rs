//! `wfdb`: the workflowdb daemon (`wfdb serve`) and its command-line client (every other verb).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::parse();
    // Before any thread starts: freed memory should not stay in per-thread malloc arenas.
    workflowdb::daemon::memory::limit_arenas();
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
    runtime.block_on(cli::run(args))
}

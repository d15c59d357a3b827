//! `kubectl-pgdr`: parse, run, exit. Everything else is in the library.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = kubectl_pgdr::cli::Cli::parse();
    kubectl_pgdr::init_logging();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut input = std::io::stdin().lock();
    let mut io = kubectl_pgdr::stdio(&mut out, &mut err, &mut input);
    let code = match kubectl_pgdr::run(cli, &mut io).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = omnihub::cli::Cli::parse();
    omnihub::panic_log::install();
    match omnihub::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = omnihub::app::cli::Cli::parse();
    omnihub::platform::panic_log::install();
    match omnihub::app::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

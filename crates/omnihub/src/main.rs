use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = omnihub::cli::Cli::parse();
    match omnihub::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

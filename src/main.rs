//! The `rkube` binary: parses flags and hands over to the role it names (server) or to the
//! kubectl-like CLI commands.

use clap::{CommandFactory, Parser, Subcommand};
use rkube::logging::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "rkube",
    version,
    about = "A Kubernetes-style container orchestrator"
)]
struct Cli {
    /// Log format (server and agent logs).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "RKUBE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(flatten)]
    global: rkube_cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane server (with no flags: a single-node cluster in ./rkube-data).
    Server(rkube::server::ServerArgs),
    /// Run a node agent: register this machine as a Node and run the pods bound to it.
    Agent(rkube::agent::AgentArgs),
    /// Run the demo HTTP app (like the book's kubia): answers with its hostname, serves /healthz
    /// and /ready, and can be told to fail or to burn CPU.
    #[command(name = "demo-app")]
    DemoApp(rkube::demo::DemoArgs),
    /// Sleep until SIGTERM or SIGINT: the docker runtime's pod sandbox, which holds a pod's
    /// network namespace for its containers.
    #[command(hide = true)]
    Pause,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
    #[command(flatten)]
    Cli(rkube_cli::Command),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => {
            logging::init(cli.log_format);
            serve(args).await
        }
        Command::Agent(args) => {
            logging::init(cli.log_format);
            rkube::agent::run(args, cli.global.kubeconfig.as_deref(), shutdown_signal()).await
        }
        Command::Pause => {
            shutdown_signal().await;
            Ok(())
        }
        Command::DemoApp(args) => {
            logging::init(cli.log_format);
            rkube::demo::run(args, shutdown_signal()).await
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rkube", &mut std::io::stdout());
            Ok(())
        }
        Command::Cli(command) => {
            let mut out = std::io::stdout();
            rkube_cli::run(&cli.global, command, &mut out).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `rkube exec`: the remote command's exit code is ours.
        Err(e)
            if e.downcast_ref::<rkube_cli::cmd::exec::RemoteExit>()
                .is_some() =>
        {
            let code = e
                .downcast_ref::<rkube_cli::cmd::exec::RemoteExit>()
                .map_or(1, |c| c.0);
            std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(e) => {
            let msg = format!("{e:#}");
            // kubectl's habit: server errors start with "Error from server", others with "error:".
            if msg.starts_with("Error from server") || msg.starts_with("error:") {
                eprintln!("{msg}");
            } else {
                eprintln!("error: {msg}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: rkube::server::ServerArgs) -> anyhow::Result<()> {
    let bind = |addr: String| async move {
        tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
    };
    let peer = bind(args.listen_peer.clone()).await?;
    let api = bind(args.listen_api.clone()).await?;
    rkube::server::run(args, peer, api, shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

//! The `syncline` binary: a thin shell over [`syncline_cli::run`].

fn main() {
    std::process::exit(syncline_cli::run(std::env::args_os()));
}

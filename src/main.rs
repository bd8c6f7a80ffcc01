fn main() -> std::process::ExitCode {
    render::cli::main()
}

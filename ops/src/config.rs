//! Settings: every one is a command-line flag, an environment variable and a key of an optional
//! TOML file, with precedence **flag > environment > file > built-in default**.
//!
//! The flags and variables are clap's (each `#[arg(long, env = ...)]`). The file is layered on
//! top without touching the process environment (`set_var` is `unsafe` in edition 2024): after a
//! first parse, every setting whose value came from its default and that the file's section
//! names is appended to the command line as `--key=value`, and the command line is parsed again.
//! So file values go through the same parsers and range checks as flags, and an error names the
//! setting, the file and the section.
//!
//! The file has one table per program: `[up]` (the launcher), `[composer]`, `[synthd]`,
//! `[streamd]`; keys are the long flag names (`lead-ms`, or `lead_ms`). Each program reads its own
//! table, rejects unknown keys in it, and ignores the other tables, so one file serves a whole
//! deployment; `auralis up --config FILE` hands the same file to each role.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Parser};

use crate::logging::LogFormat;

/// Tables a configuration file may have.
pub const SECTIONS: [&str; 4] = ["up", "composer", "synthd", "streamd"];

/// Flags every binary has, global to its subcommands.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file: `[up]`, `[composer]`, `[synthd]`, `[streamd]` tables keyed by
    /// long flag name; flags and environment variables override it.
    #[arg(long, env = "AURALIS_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter: a level (`info`, `debug`) or an `EnvFilter` directive; default `RUST_LOG`,
    /// else `info`.
    #[arg(long, env = "AURALIS_LOG_LEVEL", global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(
        long,
        env = "AURALIS_LOG_FORMAT",
        global = true,
        value_enum,
        ignore_case = true,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// Installs logging as these flags say.
    pub fn init_logging(&self) {
        crate::logging::init(self.log_level.as_deref(), self.log_format);
    }
}

/// Parses the process's command line into `P`, layering the configuration file; on error prints
/// it and exits with status 2 like clap does. `section_of` maps the chosen subcommand path (empty
/// for none) to the file's table for it, or `None` for commands that take no configuration.
pub fn parse<P: Parser>(section_of: impl Fn(&[&str]) -> Option<&'static str>) -> P {
    match parse_from(std::env::args_os(), section_of) {
        Ok(p) => p,
        Err(err) => err.exit(),
    }
}

/// [`parse`] on an explicit argument list (the first item is the program name).
pub fn parse_from<P: Parser>(
    argv: impl IntoIterator<Item = impl Into<OsString>>,
    section_of: impl Fn(&[&str]) -> Option<&'static str>,
) -> Result<P, clap::Error> {
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut cmd = P::command();
    cmd.build();
    let matches = cmd.clone().try_get_matches_from(&argv)?;

    // The chosen subcommand: its name path, matches and definition.
    let mut path = Vec::new();
    let (mut leaf_m, mut leaf_c) = (&matches, &cmd);
    while let Some((name, sub)) = leaf_m.subcommand() {
        path.push(name);
        leaf_c = leaf_c
            .find_subcommand(name)
            .expect("clap matched a subcommand it knows");
        leaf_m = sub;
    }
    let file = leaf_m
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .cloned();
    let (Some(file), Some(section)) = (file, section_of(&path)) else {
        return P::from_arg_matches(&matches);
    };

    let table = load(&file)?;
    let extra = match table.get(section) {
        Some(toml::Value::Table(settings)) => file_args(&file, section, settings, leaf_c, leaf_m)?,
        _ => Vec::new(),
    };
    if extra.is_empty() {
        return P::from_arg_matches(&matches);
    }
    let mut argv2 = argv;
    argv2.extend(extra.into_iter().map(OsString::from));
    let matches = cmd.try_get_matches_from(&argv2).map_err(|err| {
        let text = err.render().to_string();
        let text = text.trim_start_matches("error: ");
        config_error(
            err.kind(),
            &file,
            &format!("in table [{section}]: {}", text.trim_end()),
        )
    })?;
    P::from_arg_matches(&matches)
}

/// Reads and checks the file's shape: only known tables at the top level.
fn load(file: &Path) -> Result<toml::Table, clap::Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| config_error(ErrorKind::Io, file, &format!("cannot read it: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| config_error(ErrorKind::InvalidValue, file, &format!("{e}")))?;
    for (key, value) in &table {
        if !value.is_table() {
            return Err(config_error(
                ErrorKind::UnknownArgument,
                file,
                &format!(
                    "setting `{key}` must be inside a table ([{}])",
                    SECTIONS.join("], [")
                ),
            ));
        }
        if !SECTIONS.contains(&key.as_str()) {
            return Err(config_error(
                ErrorKind::UnknownArgument,
                file,
                &format!(
                    "unknown table [{key}] (expected [{}])",
                    SECTIONS.join("], [")
                ),
            ));
        }
    }
    Ok(table)
}

/// The `--key=value` arguments for the settings of `settings` still at their defaults.
fn file_args(
    file: &Path,
    section: &str,
    settings: &toml::Table,
    cmd: &clap::Command,
    matches: &ArgMatches,
) -> Result<Vec<String>, clap::Error> {
    let mut out = Vec::new();
    for (key, value) in settings {
        let long = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && a.get_id() != "config")
            .ok_or_else(|| {
                let known: Vec<_> = cmd
                    .get_arguments()
                    .filter_map(|a| a.get_long())
                    .filter(|l| *l != "config" && *l != "help" && *l != "version")
                    .collect();
                config_error(
                    ErrorKind::UnknownArgument,
                    file,
                    &format!(
                        "unknown setting `{key}` in table [{section}] (known: {})",
                        known.join(", ")
                    ),
                )
            })?;
        if matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue; // A flag or the environment wins over the file.
        }
        let bad = |what: &str| {
            config_error(
                ErrorKind::InvalidValue,
                file,
                &format!("setting `{key}` in table [{section}]: {what}"),
            )
        };
        match arg.get_action() {
            ArgAction::SetTrue => match value {
                toml::Value::Boolean(true) => out.push(format!("--{long}")),
                toml::Value::Boolean(false) => {}
                _ => return Err(bad("expected true or false")),
            },
            _ => {
                let items = match value {
                    toml::Value::Array(items) => items.iter().map(scalar).collect::<Option<_>>(),
                    v => scalar(v).map(|s| vec![s]),
                }
                .ok_or_else(|| bad("expected a string, number, boolean or array of them"))?;
                match arg.get_value_delimiter() {
                    Some(d) => out.push(format!("--{long}={}", items.join(&d.to_string()))),
                    None => out.extend(items.iter().map(|v| format!("--{long}={v}"))),
                }
            }
        }
    }
    Ok(out)
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn config_error(kind: ErrorKind, file: &Path, msg: &str) -> clap::Error {
    clap::Error::raw(kind, format!("config file {}: {msg}\n", file.display()))
}

/// One value of a table, as text (for the launcher, which shows streamd's address). `None` when
/// there is no file, no such key, or the file cannot be read (the role reports that itself).
pub fn lookup(file: &Path, section: &str, key: &str) -> Option<String> {
    let table = load(file).ok()?;
    let settings = table.get(section)?.as_table()?;
    settings
        .get(key)
        .or_else(|| settings.get(&key.replace('-', "_")))
        .and_then(scalar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
        #[command(subcommand)]
        cmd: Option<Sub>,
        #[command(flatten)]
        top: Settings,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Run(Settings),
        Other,
    }

    #[derive(Debug, clap::Args)]
    struct Settings {
        #[arg(long, default_value_t = 200)]
        lead_ms: u64,
        #[arg(long, default_value = "a")]
        name: String,
        #[arg(long, value_delimiter = ',', default_value = "focus")]
        stations: Vec<String>,
        #[arg(long)]
        unlink: bool,
        /// `PATH` is set in every test environment: it stands in for "set in the environment".
        #[arg(long, env = "PATH", default_value = "unset")]
        from_env: String,
    }

    fn write(content: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("auralis-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("c{}.toml", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&path, content).unwrap();
        path
    }

    fn section(path: &[&str]) -> Option<&'static str> {
        match path {
            [] | ["run"] => Some("composer"),
            _ => None,
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_from(std::iter::once("prog").chain(args.iter().copied()), section)
    }

    #[test]
    fn precedence_is_flag_then_env_then_file_then_default() {
        let f = write(
            "[composer]\nlead-ms = 900\nname = \"file\"\nstations = [\"focus\", \"sleep\"]\n\
             unlink = true\nfrom_env = \"file\"\n[synthd]\nwhatever = 1\n",
        );
        let f = f.to_str().unwrap();
        let cli = parse(&["--config", f, "--name", "flag"]).unwrap();
        assert_eq!(cli.top.lead_ms, 900, "file beats default");
        assert_eq!(cli.top.name, "flag", "flag beats file");
        assert_eq!(cli.top.stations, ["focus", "sleep"]);
        assert!(cli.top.unlink);
        assert_ne!(cli.top.from_env, "file", "environment beats file");
        // Same for a subcommand, with the global --config after it.
        let Some(Sub::Run(s)) = parse(&["run", "--config", f]).unwrap().cmd else {
            panic!()
        };
        assert_eq!(s.lead_ms, 900);
        // Without --config nothing changes.
        assert_eq!(parse(&[]).unwrap().top.lead_ms, 200);
        // Commands without a table ignore the file.
        assert!(matches!(
            parse(&["--config", f, "other"]).unwrap().cmd,
            Some(Sub::Other)
        ));
    }

    #[test]
    fn errors_name_the_file_table_and_setting() {
        let err = |content: &str| {
            let f = write(content);
            let e = parse(&["--config", f.to_str().unwrap()]).unwrap_err();
            e.render().to_string()
        };
        let e = err("[composer]\nlead-ms = \"soon\"\n");
        assert!(e.contains("[composer]") && e.contains("--lead-ms"), "{e}");
        let e = err("[composer]\nleadms = 1\n");
        assert!(
            e.contains("unknown setting `leadms`") && e.contains("lead-ms"),
            "{e}"
        );
        let e = err("[composr]\n");
        assert!(e.contains("unknown table [composr]"), "{e}");
        let e = err("lead-ms = 3\n");
        assert!(e.contains("must be inside a table"), "{e}");
        let e = err("[composer]\nunlink = \"yes\"\n");
        assert!(e.contains("setting `unlink`"), "{e}");
        let e = err("[composer\n");
        assert!(e.contains("config file"), "{e}");
        let e = parse(&["--config", "/nonexistent/auralis.toml"])
            .unwrap_err()
            .render()
            .to_string();
        assert!(e.contains("cannot read it"), "{e}");
    }

    #[test]
    fn lookup_reads_one_value() {
        let f = write("[streamd]\nport = 9000\n");
        assert_eq!(lookup(&f, "streamd", "port").as_deref(), Some("9000"));
        assert_eq!(lookup(&f, "streamd", "host"), None);
    }
}

//! The node's configuration: every setting of `run` from a flag, an environment variable
//! `CERCLE_<KEY>`, a TOML file (`--config FILE` or `CERCLE_CONFIG`) or its default, in that
//! order of precedence, each remembered with where it came from (`config check` prints
//! them).
//!
//! A key's name is the same everywhere: `tls_cert` in the file, `--tls-cert` as a flag,
//! `CERCLE_TLS_CERT` in the environment. An empty environment variable counts as unset.
//! Unknown keys, values of the wrong type and values that do not parse are errors naming
//! the key and where it came from (the file, with its line; the variable; the flag).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = "cercle-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// The environment variable naming the configuration file.
pub const CONFIG_VAR: &str = "CERCLE_CONFIG";
pub use cercle_limits::{CONFIG_BYTES_MAX, SHUTDOWN_GRACE_MS_MAX};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(String),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => write!(f, "default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn parse(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("'{other}' is not a log format: `text` or `json`")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The flags of `run` (and `config check`), all optional: an absent flag leaves the
/// setting to the environment, the file or the default.
#[derive(Debug, Default, clap::Args)]
pub struct RunFlags {
    /// Read settings from this TOML file (environment CERCLE_CONFIG)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory [default: cercle-data] (CERCLE_DATA_DIR)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve gRPC on; port 0 picks a free port [default: 127.0.0.1:50051] (CERCLE_LISTEN)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Close a connection that sends nothing for this long, in milliseconds [default: 60000] (CERCLE_IDLE_TIMEOUT_MS)
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: Option<u64>,
    /// Log format on stderr [default: text] (CERCLE_LOG_FORMAT)
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Serve TLS with this certificate chain, PEM (CERCLE_TLS_CERT); needs --tls-key
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM (CERCLE_TLS_KEY)
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (CERCLE_METRICS_LISTEN)
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// On SIGTERM, wait this long for requests in flight, in milliseconds [default: 10000] (CERCLE_SHUTDOWN_GRACE_MS)
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=SHUTDOWN_GRACE_MS_MAX))]
    pub shutdown_grace_ms: Option<u64>,
}

/// The configuration file: the same keys as the flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    idle_timeout_ms: Option<u64>,
    log_format: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_listen: Option<String>,
    shutdown_grace_ms: Option<u64>,
}

/// The effective configuration of `run`.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: Option<PathBuf>,
    pub data_dir: Setting<PathBuf>,
    pub listen: Setting<SocketAddr>,
    pub idle_timeout_ms: Setting<u64>,
    pub log_format: Setting<LogFormat>,
    pub tls_cert: Setting<Option<PathBuf>>,
    pub tls_key: Setting<Option<PathBuf>>,
    pub metrics_listen: Setting<Option<SocketAddr>>,
    pub shutdown_grace_ms: Setting<u64>,
}

/// Reads the environment: an unset or empty variable is `None`; one that is not UTF-8 is
/// an error naming it.
pub trait Environment {
    fn get(&self, var: &str) -> Result<Option<String>>;
}

/// The process's environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn get(&self, var: &str) -> Result<Option<String>> {
        match std::env::var(var) {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => bail!("{var} is not UTF-8"),
        }
    }
}

fn env_var(key: &str) -> String {
    format!("CERCLE_{}", key.to_ascii_uppercase())
}

/// Resolves one setting: flag, then environment, then file, then default.
struct Resolver<'a> {
    env: &'a dyn Environment,
    file: Option<&'a Path>,
}

impl Resolver<'_> {
    fn setting<T, F>(
        &self,
        key: &'static str,
        flag: Option<T>,
        file_value: Option<F>,
        default: T,
        parse_text: impl Fn(&str) -> Result<T, String>,
        from_file: impl Fn(F) -> Result<T, String>,
    ) -> Result<Setting<T>> {
        let flag_name: &'static str = match key {
            "data_dir" => "--data-dir",
            "listen" => "--listen",
            "idle_timeout_ms" => "--idle-timeout-ms",
            "log_format" => "--log-format",
            "tls_cert" => "--tls-cert",
            "tls_key" => "--tls-key",
            "metrics_listen" => "--metrics-listen",
            "shutdown_grace_ms" => "--shutdown-grace-ms",
            _ => "--?",
        };
        if let Some(value) = flag {
            return Ok(Setting { value, source: Source::Flag(flag_name) });
        }
        let var = env_var(key);
        if let Some(text) = self.env.get(&var)? {
            let value = parse_text(&text).map_err(|e| anyhow!("{var}={text:?}: {e}"))?;
            return Ok(Setting { value, source: Source::Env(var) });
        }
        if let (Some(raw), Some(path)) = (file_value, self.file) {
            let value = from_file(raw).map_err(|e| anyhow!("{}: key `{key}`: {e}", path.display()))?;
            return Ok(Setting { value, source: Source::File(path.to_path_buf()) });
        }
        Ok(Setting { value: default, source: Source::Default })
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not an address and port, such as 127.0.0.1:50051 or [::]:50051"))
}

fn parse_ms(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let ms: u64 = text.parse().map_err(|_| format!("'{text}' is not a whole number of milliseconds"))?;
    if !(min..=max).contains(&ms) {
        return Err(format!("{ms} ms is out of range: {min} to {max}"));
    }
    Ok(ms)
}

fn ms_in(min: u64, max: u64) -> impl Fn(u64) -> Result<u64, String> {
    move |ms| parse_ms(&ms.to_string(), min, max)
}

fn path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

/// Reads and parses a configuration file, bounded in size.
fn read_file(path: &Path) -> Result<FileConfig> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    let mut text = String::new();
    file.take(CONFIG_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    if text.len() as u64 > CONFIG_BYTES_MAX {
        bail!("{}: a configuration file is at most {CONFIG_BYTES_MAX} bytes", path.display());
    }
    // toml's `Display` draws the offending line over several lines; the error stays on one
    // line: the line and column, the line itself (which names the key a bad value belongs
    // to), and toml's message (which names an unknown key, with those allowed).
    toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or(String::new(), |span| {
            let before = text.get(..span.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}, column {column} (`{source}`): ")
        });
        anyhow!("{}: {at}{}", path.display(), e.message().trim_end())
    })
}

impl Config {
    /// The configuration from `flags`, the environment and the file, checked.
    pub fn resolve(flags: RunFlags, env: &dyn Environment) -> Result<Config> {
        let file_path = match flags.config {
            Some(path) => Some(path),
            None => env.get(CONFIG_VAR)?.map(PathBuf::from),
        };
        let file = match &file_path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let r = Resolver { env, file: file_path.as_deref() };
        let idle_max = u64::MAX / 2;
        let config = Config {
            data_dir: r.setting(
                "data_dir",
                flags.data_dir,
                file.data_dir,
                DEFAULT_DATA_DIR.into(),
                path,
                Ok,
            )?,
            listen: r.setting(
                "listen",
                flags.listen,
                file.listen,
                DEFAULT_LISTEN.parse().map_err(|_| anyhow!("the default address does not parse"))?,
                parse_addr,
                |t| parse_addr(&t),
            )?,
            idle_timeout_ms: r.setting(
                "idle_timeout_ms",
                flags.idle_timeout_ms,
                file.idle_timeout_ms,
                cercle_limits::CONNECTION_IDLE_TIMEOUT.as_millis() as u64,
                |t| parse_ms(t, 1, idle_max),
                ms_in(1, idle_max),
            )?,
            log_format: r.setting(
                "log_format",
                flags.log_format,
                file.log_format,
                LogFormat::Text,
                LogFormat::parse,
                |t| LogFormat::parse(&t),
            )?,
            tls_cert: r.setting(
                "tls_cert",
                flags.tls_cert.map(Some),
                file.tls_cert.map(Some),
                None,
                |t| path(t).map(Some),
                Ok,
            )?,
            tls_key: r.setting(
                "tls_key",
                flags.tls_key.map(Some),
                file.tls_key.map(Some),
                None,
                |t| path(t).map(Some),
                Ok,
            )?,
            metrics_listen: r.setting(
                "metrics_listen",
                flags.metrics_listen.map(Some),
                file.metrics_listen,
                None,
                |t| parse_addr(t).map(Some),
                |t| parse_addr(&t).map(Some),
            )?,
            shutdown_grace_ms: r.setting(
                "shutdown_grace_ms",
                flags.shutdown_grace_ms,
                file.shutdown_grace_ms,
                cercle_server::SHUTDOWN_GRACE.as_millis() as u64,
                |t| parse_ms(t, 0, SHUTDOWN_GRACE_MS_MAX),
                ms_in(0, SHUTDOWN_GRACE_MS_MAX),
            )?,
            file: file_path,
        };
        config.check()?;
        Ok(config)
    }

    /// What must hold between settings.
    fn check(&self) -> Result<()> {
        match (&self.tls_cert.value, &self.tls_key.value) {
            (Some(_), None) => {
                bail!("tls_cert is set ({}) but tls_key is not: TLS needs both", self.tls_cert.source)
            }
            (None, Some(_)) => {
                bail!("tls_key is set ({}) but tls_cert is not: TLS needs both", self.tls_key.source)
            }
            _ => {}
        }
        if let Some(metrics) = self.metrics_listen.value
            && metrics == self.listen.value
            && metrics.port() != 0
        {
            bail!(
                "metrics_listen ({}) is the gRPC address listen ({}): metrics are served on a port of their own",
                self.metrics_listen.source,
                self.listen.source
            );
        }
        Ok(())
    }

    /// Reads and checks the TLS certificate and key, when TLS is configured.
    pub fn tls_identity(&self) -> Result<Option<cercle_server::TlsIdentity>> {
        match (&self.tls_cert.value, &self.tls_key.value) {
            (Some(cert), Some(key)) => cercle_server::TlsIdentity::load(cert, key).map(Some).map_err(|e| {
                anyhow!(
                    "TLS (tls_cert from {}, tls_key from {}): {e}",
                    self.tls_cert.source,
                    self.tls_key.source
                )
            }),
            _ => Ok(None),
        }
    }

    pub fn limits(&self) -> cercle_server::ServerLimits {
        cercle_server::ServerLimits {
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.value),
            ..cercle_server::ServerLimits::default()
        }
    }

    /// The settings as `config check` prints them: one line each, with their source.
    pub fn lines(&self) -> Vec<String> {
        fn show<T>(value: &Option<T>, f: impl Fn(&T) -> String) -> String {
            value.as_ref().map_or_else(|| "(none)".to_string(), f)
        }
        let path = |p: &PathBuf| format!("{:?}", p.display().to_string());
        let rows: Vec<(&str, String, &Source)> = vec![
            ("data_dir", path(&self.data_dir.value), &self.data_dir.source),
            ("listen", format!("\"{}\"", self.listen.value), &self.listen.source),
            ("idle_timeout_ms", self.idle_timeout_ms.value.to_string(), &self.idle_timeout_ms.source),
            ("log_format", format!("\"{}\"", self.log_format.value.name()), &self.log_format.source),
            ("tls_cert", show(&self.tls_cert.value, path), &self.tls_cert.source),
            ("tls_key", show(&self.tls_key.value, path), &self.tls_key.source),
            (
                "metrics_listen",
                show(&self.metrics_listen.value, |a| format!("\"{a}\"")),
                &self.metrics_listen.source,
            ),
            ("shutdown_grace_ms", self.shutdown_grace_ms.value.to_string(), &self.shutdown_grace_ms.source),
        ];
        rows.into_iter().map(|(key, value, source)| format!("{key:<18} = {value:<40} # {source}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct FakeEnv(BTreeMap<String, String>);

    impl Environment for FakeEnv {
        fn get(&self, var: &str) -> Result<Option<String>> {
            Ok(self.0.get(var).filter(|v| !v.is_empty()).cloned())
        }
    }

    fn env(vars: &[(&str, &str)]) -> FakeEnv {
        FakeEnv(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cercle-node.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// Resolves and returns the error's text, or the effective listen address and its source.
    fn check(flags: RunFlags, vars: &[(&str, &str)], expected: Result<(&str, &str), &str>) {
        let got = Config::resolve(flags, &env(vars))
            .map(|c| (c.listen.value.to_string(), c.listen.source.to_string()))
            .map_err(|e| format!("{e:#}"));
        match (got, expected) {
            (Ok((addr, source)), Ok((want_addr, want_source))) => {
                assert_eq!(addr, want_addr);
                assert!(source.starts_with(want_source), "source {source}, expected {want_source}");
            }
            (Err(e), Err(want)) => assert!(e.contains(want), "error {e:?} does not contain {want:?}"),
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn flag_beats_environment_beats_file_beats_default() {
        let (_d, path) = file("listen = \"127.0.0.1:3\"\n");
        let with_file = || RunFlags { config: Some(path.clone()), ..RunFlags::default() };
        check(RunFlags::default(), &[], Ok(("127.0.0.1:50051", "default")));
        check(with_file(), &[], Ok(("127.0.0.1:3", "file")));
        check(
            with_file(),
            &[("CERCLE_LISTEN", "127.0.0.1:2")],
            Ok(("127.0.0.1:2", "environment CERCLE_LISTEN")),
        );
        let flag = RunFlags { listen: Some("127.0.0.1:1".parse().unwrap()), ..with_file() };
        check(flag, &[("CERCLE_LISTEN", "127.0.0.1:2")], Ok(("127.0.0.1:1", "flag --listen")));
        // An empty variable is unset; the file named by CERCLE_CONFIG is read.
        check(with_file(), &[("CERCLE_LISTEN", "")], Ok(("127.0.0.1:3", "file")));
        check(RunFlags::default(), &[("CERCLE_CONFIG", path.to_str().unwrap())], Ok(("127.0.0.1:3", "file")));
    }

    #[test]
    fn bad_input_is_named() {
        let (_d, unknown) = file("listen = \"127.0.0.1:3\"\nlisten_port = 4\n");
        check(
            RunFlags { config: Some(unknown.clone()), ..RunFlags::default() },
            &[],
            Err("unknown field `listen_port`"),
        );
        let text = format!(
            "{:#}",
            Config::resolve(RunFlags { config: Some(unknown.clone()), ..RunFlags::default() }, &env(&[]))
                .unwrap_err()
        );
        assert!(text.contains(&unknown.display().to_string()) && text.contains("line 2"), "{text}");
        let (_d, bad_addr) = file("listen = \"localhost\"\n");
        check(
            RunFlags { config: Some(bad_addr), ..RunFlags::default() },
            &[],
            Err("key `listen`: 'localhost' is not an address"),
        );
        let (_d, bad_type) = file("idle_timeout_ms = \"soon\"\n");
        check(RunFlags { config: Some(bad_type), ..RunFlags::default() }, &[], Err("idle_timeout_ms"));
        check(
            RunFlags::default(),
            &[("CERCLE_LISTEN", "nowhere")],
            Err("CERCLE_LISTEN=\"nowhere\": 'nowhere' is not an address"),
        );
        check(
            RunFlags::default(),
            &[("CERCLE_LOG_FORMAT", "xml")],
            Err("CERCLE_LOG_FORMAT=\"xml\": 'xml' is not a log format"),
        );
        check(RunFlags::default(), &[("CERCLE_SHUTDOWN_GRACE_MS", "300001")], Err("out of range"));
        check(
            RunFlags::default(),
            &[("CERCLE_TLS_CERT", "/x.pem")],
            Err("tls_cert is set (environment CERCLE_TLS_CERT) but tls_key is not"),
        );
        check(
            RunFlags { config: Some("/nonexistent/cercle.toml".into()), ..RunFlags::default() },
            &[],
            Err("cannot read the configuration /nonexistent/cercle.toml"),
        );
        let both = [("CERCLE_LISTEN", "127.0.0.1:9000"), ("CERCLE_METRICS_LISTEN", "127.0.0.1:9000")];
        check(RunFlags::default(), &both, Err("metrics are served on a port of their own"));
    }

    #[test]
    fn a_missing_certificate_is_named() {
        let c = Config::resolve(
            RunFlags {
                tls_cert: Some("/nonexistent/cert.pem".into()),
                tls_key: Some("/nonexistent/key.pem".into()),
                ..RunFlags::default()
            },
            &env(&[]),
        )
        .unwrap();
        let e = format!("{:#}", c.tls_identity().unwrap_err());
        assert!(e.contains("/nonexistent/cert.pem") && e.contains("No such file"), "{e}");
    }

    /// The sample shipped in deploy/ resolves, and mentions every key (set, or commented out).
    #[test]
    fn the_sample_configuration_mentions_every_key() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cercle-node.toml");
        let c = Config::resolve(RunFlags { config: Some(sample.clone()), ..RunFlags::default() }, &env(&[]))
            .unwrap();
        let text = std::fs::read_to_string(&sample).unwrap();
        for line in c.lines() {
            let key = line.split_whitespace().next().unwrap();
            assert!(text.contains(&format!("{key} = ")), "the sample does not mention {key}");
        }
    }
}

//! The device agent's configuration: TOML text (up to the first NUL; `@DIR@` stands for a
//! directory holding secret files `cs` and `dps`) plus `NAME=value` environment lines
//! (after it). Loading never panics, and neither an error nor the accepted settings show
//! a secret read from a `*_file` or `*_env` key.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use connector_agent::config::{self, Overrides};
use libfuzzer_sys::fuzz_target;

const CS_KEY: &str = "Y3Mtc2VjcmV0LU1BUktFUi00MjQyLWtleSE=";
const DPS_KEY: &str = "ZHBzLXNlY3JldC1NQVJLRVItOTE5MS1rZXktMzJieXQ=";
const MARKERS: [&str; 4] = [
    "Y3Mtc2VjcmV0LU1BUktFUi00MjQyLWtleSE",
    "ZHBzLXNlY3JldC1NQVJLRVItOTE5MS1rZXktMzJieXQ",
    "cs-secret-MARKER-4242",
    "dps-secret-MARKER-9191",
];

fn secret_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("connector-agent-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let cs = format!("HostName=hub.example.net;DeviceId=dev-1;SharedAccessKey={CS_KEY}");
        std::fs::write(dir.join("cs"), cs).expect("secret file");
        std::fs::write(dir.join("dps"), DPS_KEY).expect("secret file");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let dir = secret_dir();
    let d = dir.to_string_lossy();
    let (toml_text, env_text) = input.split_once('\0').unwrap_or((input, ""));
    let toml_text = toml_text.replace("@DIR@", &d);
    let mut env = vec![
        ("HOME".to_owned(), d.clone().into_owned()),
        ("DEVICE_CS".to_owned(), format!("HostName=hub.example.net;DeviceId=dev-1;SharedAccessKey={CS_KEY}")),
        ("DPS_KEY".to_owned(), DPS_KEY.to_owned()),
    ];
    for line in env_text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            env.push((k.to_owned(), v.replace("@DIR@", &d)));
        }
    }
    let shown = match config::load_str(&toml_text, &dir.join("agent.toml"), &env, &Overrides::default()) {
        Ok(settings) => format!("{settings:?}"),
        Err(e) => format!("{e}\n{e:?}"),
    };
    // What the input itself spells out may come back; a secret only read from a file or a
    // named variable must not.
    for m in MARKERS {
        assert!(input.contains(m) || !shown.contains(m), "{m} shown: {shown}");
    }
});

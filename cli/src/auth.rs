//! Registry credentials from the docker config file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `credHelpers`, `auths` (base64 `auth` or `username`/`password`) and
//! `credsStore`, in that order; anonymous when none has an entry for the registry.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::error::Error;

/// The server name Docker Hub's credentials are stored under.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// The parts of a docker config file that hold credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerConfig {
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    pub creds_store: Option<String>,
    #[serde(default)]
    pub cred_helpers: BTreeMap<String, String>,
}

#[derive(Clone, Default, Deserialize)]
pub struct AuthEntry {
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry")
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Where a registry's credentials came from, or where they were looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// No entry for the registry; `config` is the file that was read (or would have been).
    Anonymous { config: Option<PathBuf> },
    /// An `auths` entry of this file.
    ConfigFile { path: PathBuf },
    /// `docker-credential-NAME`, named by `credHelpers` or `credsStore` of this file.
    Helper { name: String, config: PathBuf },
}

impl CredentialSource {
    /// A sentence for an authentication failure at `registry`.
    pub fn explain_refusal(&self, registry: &str) -> String {
        match self {
            CredentialSource::Anonymous { config: Some(path) } => format!(
                "no credentials for {registry} were found in {} (the docker config file: \
                 $DOCKER_CONFIG/config.json, else ~/.docker/config.json), so Spore tried \
                 anonymously; add an \"auths\" entry for {registry} (e.g. with `docker login` \
                 or `skopeo login --authfile`)",
                path.display()
            ),
            CredentialSource::Anonymous { config: None } => format!(
                "no docker config file was found (neither $DOCKER_CONFIG nor $HOME is set), so \
                 Spore tried {registry} anonymously"
            ),
            CredentialSource::ConfigFile { path } => format!(
                "the credentials for {registry} in {} were rejected",
                path.display()
            ),
            CredentialSource::Helper { name, config } => format!(
                "the credentials for {registry} from docker-credential-{name} (named in {}) \
                 were rejected",
                config.display()
            ),
        }
    }
}

/// Credentials for one registry and where they came from.
#[derive(Debug, Clone)]
pub struct ResolvedAuth {
    pub auth: RegistryAuth,
    pub source: CredentialSource,
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn docker_config_path(
    docker_config: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    match (docker_config, home) {
        (Some(dir), _) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
        (_, Some(home)) if !home.is_empty() => {
            Some(PathBuf::from(home).join(".docker").join("config.json"))
        }
        _ => None,
    }
}

/// The host a docker config key or a reference's registry names, so that `https://host/v1/`,
/// `host` and `http://host` match; Docker Hub's aliases all become `docker.io`.
pub fn normalize_registry(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

impl DockerConfig {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    fn auth_entry(&self, registry: &str) -> Option<&AuthEntry> {
        let wanted = normalize_registry(registry);
        self.auths
            .iter()
            .find(|(key, _)| normalize_registry(key) == wanted)
            .map(|(_, entry)| entry)
    }

    fn cred_helper(&self, registry: &str) -> Option<&str> {
        let wanted = normalize_registry(registry);
        self.cred_helpers
            .iter()
            .find(|(key, _)| normalize_registry(key) == wanted)
            .map(|(_, helper)| helper.as_str())
    }
}

impl AuthEntry {
    /// The entry's username and password, `None` when it holds none (docker writes empty
    /// entries when a credential store keeps the secret).
    fn basic(&self, registry: &str, path: &Path) -> Result<Option<RegistryAuth>, Error> {
        if let (Some(user), Some(password)) = (&self.username, &self.password)
            && !user.is_empty()
        {
            return Ok(Some(RegistryAuth::Basic(user.clone(), password.clone())));
        }
        if let Some(encoded) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = |reason: String| Error::DockerConfig {
                path: path.to_path_buf(),
                reason: format!("the \"auth\" of {registry} {reason}"),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| bad(format!("is not base64: {e}")))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| bad("is not UTF-8 text".into()))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| bad("does not decode to USER:PASSWORD".into()))?;
            return Ok(Some(RegistryAuth::Basic(
                user.to_string(),
                password.to_string(),
            )));
        }
        if self.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(Error::DockerConfig {
                path: path.to_path_buf(),
                reason: format!(
                    "the entry for {registry} holds only an identity token, which spore does not \
                     support yet; give it a username and password"
                ),
            });
        }
        Ok(None)
    }
}

/// Credentials for `registry` (a reference's registry, e.g. `127.0.0.1:5000` or `docker.io`),
/// from the docker config file named by the environment.
pub fn resolve(registry: &str) -> Result<ResolvedAuth, Error> {
    let path = docker_config_path(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME"));
    resolve_from(path.as_deref(), registry, &HelperProgram::OnPath)
}

/// How `docker-credential-NAME` is found: on `PATH`, or in a given directory (tests).
#[derive(Debug, Clone)]
pub enum HelperProgram {
    OnPath,
    InDir(PathBuf),
}

impl HelperProgram {
    fn program(&self, name: &str) -> PathBuf {
        let file = format!("docker-credential-{name}");
        match self {
            HelperProgram::OnPath => PathBuf::from(file),
            HelperProgram::InDir(dir) => dir.join(file),
        }
    }
}

/// Credentials for `registry` from the docker config file at `path` (absent file: anonymous).
pub fn resolve_from(
    path: Option<&Path>,
    registry: &str,
    helpers: &HelperProgram,
) -> Result<ResolvedAuth, Error> {
    let anonymous = ResolvedAuth {
        auth: RegistryAuth::Anonymous,
        source: CredentialSource::Anonymous {
            config: path.map(Path::to_path_buf),
        },
    };
    let Some(path) = path else {
        return Ok(anonymous);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(anonymous),
        Err(e) => {
            return Err(Error::DockerConfig {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let config = DockerConfig::parse(&text).map_err(|e| Error::DockerConfig {
        path: path.to_path_buf(),
        reason: format!("not valid JSON: {e}"),
    })?;

    let from_helper = |name: &str| -> Result<Option<ResolvedAuth>, Error> {
        Ok(
            run_helper(&helpers.program(name), name, registry)?.map(|auth| ResolvedAuth {
                auth,
                source: CredentialSource::Helper {
                    name: name.to_string(),
                    config: path.to_path_buf(),
                },
            }),
        )
    };

    if let Some(helper) = config.cred_helper(registry)
        && let Some(resolved) = from_helper(helper)?
    {
        return Ok(resolved);
    }
    if let Some(entry) = config.auth_entry(registry)
        && let Some(auth) = entry.basic(registry, path)?
    {
        return Ok(ResolvedAuth {
            auth,
            source: CredentialSource::ConfigFile {
                path: path.to_path_buf(),
            },
        });
    }
    if let Some(store) = config.creds_store.as_deref().filter(|s| !s.is_empty())
        && let Some(resolved) = from_helper(store)?
    {
        return Ok(resolved);
    }
    Ok(anonymous)
}

/// The server name a credential helper knows `registry` by.
fn helper_server_name(registry: &str) -> String {
    if normalize_registry(registry) == "docker.io" {
        DOCKER_HUB_SERVER.to_string()
    } else {
        registry.to_string()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Why the answer of a credential helper cannot be used.
#[derive(Debug, thiserror::Error)]
enum HelperAnswerError {
    #[error("unreadable answer: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error("it returned an identity token, which spore does not support yet")]
    IdentityToken,
}

/// Parses the answer of `docker-credential-NAME get`.
fn parse_helper_answer(stdout: &[u8]) -> Result<RegistryAuth, HelperAnswerError> {
    let answer: HelperAnswer = serde_json::from_slice(stdout)?;
    if answer.username == "<token>" {
        return Err(HelperAnswerError::IdentityToken);
    }
    Ok(RegistryAuth::Basic(answer.username, answer.secret))
}

/// Runs the credential helper protocol's `get`: `None` when the helper has no credentials for
/// the registry.
fn run_helper(program: &Path, name: &str, registry: &str) -> Result<Option<RegistryAuth>, Error> {
    let failed = |reason: String| Error::CredentialHelper {
        helper: name.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", program.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(helper_server_name(registry).as_bytes())
            .map_err(|e| failed(format!("cannot write to it: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(format!("cannot read its answer: {e}")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(format!("{}: {}", output.status, said.trim())));
    }
    parse_helper_answer(&output.stdout)
        .map(Some)
        .map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic(user.into(), password.into())
    }

    fn write_config(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("config.json");
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn resolve_in(path: &Path, registry: &str) -> Result<ResolvedAuth, Error> {
        resolve_from(Some(path), registry, &HelperProgram::OnPath)
    }

    #[test]
    fn the_config_path_follows_docker_config_then_home() {
        assert_eq!(
            docker_config_path(Some("/etc/dc".into()), Some("/home/u".into())),
            Some(PathBuf::from("/etc/dc/config.json"))
        );
        assert_eq!(
            docker_config_path(None, Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        assert_eq!(
            docker_config_path(Some("".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        assert_eq!(docker_config_path(None, None), None);
    }

    #[test]
    fn registry_keys_match_with_or_without_scheme_and_path() {
        assert_eq!(
            normalize_registry("https://Registry.example.com/v1/"),
            "registry.example.com"
        );
        assert_eq!(
            normalize_registry("http://127.0.0.1:5000"),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_registry("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("docker.io"), "docker.io");
    }

    #[test]
    fn a_base64_auth_entry_gives_basic_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        // "alice:s3cr:et" — the password may hold colons.
        let path = write_config(
            dir.path(),
            r#"{"auths":{"https://127.0.0.1:5000":{"auth":"YWxpY2U6czNjcjpldA=="}}}"#,
        );
        let resolved = resolve_in(&path, "127.0.0.1:5000").expect("resolves");
        assert_eq!(resolved.auth, basic("alice", "s3cr:et"));
        assert_eq!(resolved.source, CredentialSource::ConfigFile { path });
    }

    #[test]
    fn username_and_password_fields_are_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(
            dir.path(),
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}"#,
        );
        let resolved = resolve_in(&path, "docker.io").expect("resolves");
        assert_eq!(resolved.auth, basic("bob", "pw"));
    }

    #[test]
    fn no_entry_means_anonymous_and_says_where_it_looked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(
            dir.path(),
            r#"{"auths":{"other.example.com":{"auth":"eDp5"}}}"#,
        );
        let resolved = resolve_in(&path, "127.0.0.1:5000").expect("resolves");
        assert_eq!(resolved.auth, RegistryAuth::Anonymous);
        let sentence = resolved.source.explain_refusal("127.0.0.1:5000");
        assert!(sentence.contains(&path.display().to_string()), "{sentence}");
        assert!(sentence.contains("127.0.0.1:5000"), "{sentence}");
    }

    #[test]
    fn a_missing_file_means_anonymous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let resolved = resolve_in(&path, "127.0.0.1:5000").expect("resolves");
        assert_eq!(resolved.auth, RegistryAuth::Anonymous);
        assert_eq!(
            resolved.source,
            CredentialSource::Anonymous { config: Some(path) }
        );
    }

    #[test]
    fn broken_files_and_entries_are_precise_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(dir.path(), "{not json");
        let err = resolve_in(&path, "r.example.com").expect_err("bad json");
        assert!(err.to_string().contains("not valid JSON"), "{err}");

        let path = write_config(dir.path(), r#"{"auths":{"r.example.com":{"auth":"!!!"}}}"#);
        let err = resolve_in(&path, "r.example.com").expect_err("bad base64");
        assert!(err.to_string().contains("is not base64"), "{err}");

        // "nocolon" in base64.
        let path = write_config(
            dir.path(),
            r#"{"auths":{"r.example.com":{"auth":"bm9jb2xvbg=="}}}"#,
        );
        let err = resolve_in(&path, "r.example.com").expect_err("no colon");
        assert!(err.to_string().contains("USER:PASSWORD"), "{err}");
    }

    #[test]
    fn an_empty_entry_falls_through_to_anonymous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(dir.path(), r#"{"auths":{"r.example.com":{}}}"#);
        let resolved = resolve_in(&path, "r.example.com").expect("resolves");
        assert_eq!(resolved.auth, RegistryAuth::Anonymous);
    }

    #[test]
    fn helper_answers_are_parsed() {
        assert_eq!(
            parse_helper_answer(br#"{"ServerURL":"r","Username":"u","Secret":"s"}"#).ok(),
            Some(basic("u", "s"))
        );
        assert!(matches!(
            parse_helper_answer(br#"{"Username":"<token>","Secret":"t"}"#),
            Err(HelperAnswerError::IdentityToken)
        ));
        assert!(matches!(
            parse_helper_answer(b"garbage"),
            Err(HelperAnswerError::Unreadable(_))
        ));
        assert_eq!(helper_server_name("index.docker.io"), DOCKER_HUB_SERVER);
        assert_eq!(helper_server_name("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[cfg(unix)]
    #[test]
    fn a_credential_helper_is_run_with_the_protocol() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let helper = dir.path().join("docker-credential-test");
        // Answers only for the server it is asked about on stdin, as real helpers do.
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\nif [ \"$1\" = get ] && [ \"$server\" = \"127.0.0.1:5000\" ]; then\n\
             echo '{\"ServerURL\":\"127.0.0.1:5000\",\"Username\":\"carol\",\"Secret\":\"pw\"}'\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .expect("write helper");
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = write_config(dir.path(), r#"{"credsStore":"test"}"#);
        let helpers = HelperProgram::InDir(dir.path().to_path_buf());

        let resolved = resolve_from(Some(&path), "127.0.0.1:5000", &helpers).expect("resolves");
        assert_eq!(resolved.auth, basic("carol", "pw"));
        assert_eq!(
            resolved.source,
            CredentialSource::Helper {
                name: "test".into(),
                config: path.clone()
            }
        );
        let other = resolve_from(Some(&path), "other.example.com", &helpers).expect("resolves");
        assert_eq!(other.auth, RegistryAuth::Anonymous);
    }

    #[test]
    fn a_missing_helper_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(dir.path(), r#"{"credHelpers":{"r.example.com":"absent"}}"#);
        let helpers = HelperProgram::InDir(dir.path().to_path_buf());
        let err = resolve_from(Some(&path), "r.example.com", &helpers).expect_err("no helper");
        assert!(
            err.to_string().contains("docker-credential-absent"),
            "{err}"
        );
    }
}

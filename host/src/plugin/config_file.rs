//! A plugin's configuration file (`<stem>.json`, `.yaml` or `.yml` beside the component, or a
//! Python scenario `<name>.py`, the configuration of the stock `python` plugin): read,
//! checked for syntax, and handed to the plugin as the operator wrote it, so a refusal can
//! name the line and column of the file the operator edits.

use super::bindings::labkubelet::runtime::lab::{ConfigError, ConfigFormat, PluginConfig};
use std::path::{Path, PathBuf};

/// The extensions a configuration file may have, in the order they are looked for.
const EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// A plugin's configuration: a file's text, or none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    /// Where it was read from; `None` when the plugin has no configuration file.
    pub path: Option<PathBuf>,
    pub text: String,
    format: Format,
}

/// How a configuration file is written, from its extension.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Format {
    #[default]
    Json,
    Yaml,
    Python,
}

impl ConfigFile {
    /// No configuration file.
    pub fn none() -> Self {
        ConfigFile::default()
    }

    /// A configuration file's text; its extension says how it is written (`.json` is JSON,
    /// `.py` Python, anything else YAML).
    pub fn new(path: &Path, text: String) -> Self {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            Some("py") => Format::Python,
            _ => Format::Yaml,
        };
        ConfigFile { path: Some(path.to_path_buf()), text, format }
    }

    /// Whether this is a Python scenario.
    pub fn is_python(&self) -> bool {
        self.format == Format::Python
    }

    /// Whether `path` names a Python scenario, served by the stock `python` plugin.
    pub fn is_python_path(path: &Path) -> bool {
        path.extension().is_some_and(|e| e == "py")
    }

    /// Reads `path`, which names a configuration file.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(ConfigFile::new(path, std::fs::read_to_string(path)?))
    }

    /// Whether `path` names a configuration file rather than a component.
    pub fn is_config_path(path: &Path) -> bool {
        path.extension().is_some_and(|e| EXTENSIONS.iter().any(|x| e == *x))
    }

    /// The configuration file beside a component, if there is one.
    pub fn beside(component: &Path) -> std::io::Result<Self> {
        for ext in EXTENSIONS {
            let path = component.with_extension(ext);
            if path.exists() {
                return ConfigFile::read(&path);
            }
        }
        Ok(ConfigFile::none())
    }

    /// Whether the text parses as the JSON or YAML it claims to be; the error is placed in
    /// the file, as `<file>:<line>:<column>: <message>`. Python is checked by the plugin that
    /// runs it, which has the parser.
    pub fn check_syntax(&self) -> Result<(), String> {
        if self.text.trim().is_empty() {
            return Ok(());
        }
        let (message, line, column) = match self.format {
            Format::Python => return Ok(()),
            Format::Yaml => match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&self.text) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                    (format!("not valid YAML: {}", strip_position(&e.to_string(), line, column)), line, column)
                }
            },
            Format::Json => match serde_json::from_str::<serde_json::Value>(&self.text) {
                Ok(_) => return Ok(()),
                Err(e) => (format!("not valid JSON: {}", strip_position(&e.to_string(), e.line(), e.column())), e.line(), e.column()),
            },
        };
        let error = ConfigError { message, line: u32::try_from(line).ok().filter(|l| *l > 0), column: u32::try_from(column).ok().filter(|_| line > 0) };
        Err(self.describe(&error))
    }

    /// A plugin's refusal, placed in the file: `scripted.yaml:7:5: unknown field ...`.
    pub(crate) fn describe(&self, error: &ConfigError) -> String {
        let file = self.path.as_ref().map_or("the empty configuration".to_string(), |p| p.display().to_string());
        match (error.line, error.column) {
            (Some(line), Some(column)) => format!("{file}:{line}:{column}: {}", error.message),
            (Some(line), None) => format!("{file}:{line}: {}", error.message),
            _ => format!("{file}: {}", error.message),
        }
    }

    /// What the plugin's `configure` is given.
    pub(crate) fn to_wit(&self) -> PluginConfig {
        let format = match self.format {
            Format::Json => ConfigFormat::Json,
            Format::Yaml => ConfigFormat::Yaml,
            Format::Python => ConfigFormat::Python,
        };
        let file_name = self.path.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        PluginConfig { text: self.text.clone(), format, file_name }
    }
}

/// A parser's message without the position it appends (the position is shown in front).
fn strip_position(message: &str, line: usize, column: usize) -> String {
    let suffix = format!(" at line {line} column {column}");
    message.strip_suffix(&suffix).unwrap_or(message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_is_placed_in_the_file() {
        let config = ConfigFile::new(Path::new("lab/scripted.yaml"), "rules:\n  - match: {pod: a\n".into());
        let e = config.check_syntax().unwrap_err();
        assert!(e.starts_with("lab/scripted.yaml:3:1: not valid YAML: "), "{e}");
        let config = ConfigFile::new(Path::new("lab/oomkill.json"), "{\"afterSeconds\": }".into());
        assert_eq!(config.check_syntax().unwrap_err(), "lab/oomkill.json:1:18: not valid JSON: expected value");
    }

    #[test]
    fn yaml_and_yml_are_yaml_and_json_is_json() {
        assert_eq!(ConfigFile::new(Path::new("a.yml"), String::new()).to_wit().format, ConfigFormat::Yaml);
        assert_eq!(ConfigFile::new(Path::new("a.yaml"), String::new()).to_wit().format, ConfigFormat::Yaml);
        assert_eq!(ConfigFile::new(Path::new("a.json"), String::new()).to_wit().format, ConfigFormat::Json);
        let python = ConfigFile::new(Path::new("lab/flaky.py"), "def on_start(c):\n".into()).to_wit();
        assert_eq!((python.format, python.file_name.as_str()), (ConfigFormat::Python, "flaky.py"));
        assert!(ConfigFile::new(Path::new("a.yaml"), "# only comments\n".into()).check_syntax().is_ok());
    }
}

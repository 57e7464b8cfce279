//! A plugin's configuration: the file next to the component as the operator wrote it, read
//! into the scenario's own type with errors that point at the line and column of that file.
//!
//! The keys every plugin understands (`selector`, `initContainerSeconds`,
//! `runToCompletionSeconds`) are taken out by the SDK, so a scenario's type can deny unknown
//! fields and still sit in a file that sets them.

use crate::bindings::labkubelet::runtime::lab as wit;
use crate::container::Completion;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::time::Duration;

/// A plugin's configuration file: its text and how it is written.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    text: String,
    format: Format,
    file_name: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Format {
    #[default]
    Json,
    Yaml,
    Python,
}

impl ConfigFile {
    /// A JSON configuration, as the host hands over a `<plugin>.json` file.
    pub fn json(text: &str) -> Self {
        ConfigFile { text: text.into(), format: Format::Json, file_name: String::new() }
    }

    /// A YAML configuration, as the host hands over a `<plugin>.yaml` file.
    pub fn yaml(text: &str) -> Self {
        ConfigFile { text: text.into(), format: Format::Yaml, file_name: String::new() }
    }

    /// A Python scenario, as the host hands over a `<name>.py` file to the stock `python`
    /// plugin.
    pub fn python(file_name: &str, text: &str) -> Self {
        ConfigFile { text: text.into(), format: Format::Python, file_name: file_name.into() }
    }

    /// Whether the file is a Python scenario (read its [`text`](Self::text); it has no keys
    /// to [`parse`](Self::parse)).
    pub fn is_python(&self) -> bool {
        self.format == Format::Python
    }

    /// The file's name without its folder (`flaky.py`); empty when there is no file or the
    /// configuration was made in code.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The file's text; empty when the plugin has no configuration file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Reads the configuration into the scenario's type: its defaults when there is none.
    /// The keys every plugin understands are skipped; errors carry the line and column.
    ///
    /// ```
    /// use labkubelet_guest::ConfigFile;
    /// #[derive(serde::Deserialize, Default, Debug)]
    /// #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
    /// struct Settings { after_seconds: u64 }
    ///
    /// let s: Settings = ConfigFile::yaml("selector: app=db\nafterSeconds: 30\n").parse().unwrap();
    /// assert_eq!(s.after_seconds, 30);
    /// let e = ConfigFile::yaml("selector: app=db\nafter: 30\n").parse::<Settings>().unwrap_err();
    /// assert_eq!((e.line, e.column), (Some(2), Some(1)));
    /// assert_eq!(e.message, "unknown field `after`, expected `afterSeconds`");
    /// ```
    pub fn parse<T: DeserializeOwned + Default>(&self) -> Result<T, ConfigError> {
        self.split::<T>().map(|(rest, _)| rest)
    }

    /// The keys every plugin understands; a Python scenario sets them in its own code.
    pub(crate) fn common(&self) -> Result<CommonConfig, ConfigError> {
        if self.is_python() {
            return Ok(CommonConfig::default());
        }
        self.split::<IgnoredAny>().map(|(_, common)| common)
    }

    fn split<T: DeserializeOwned + Default>(&self) -> Result<(T, CommonConfig), ConfigError> {
        if self.text.trim().is_empty() {
            return Ok((T::default(), CommonConfig::default()));
        }
        let split: Split<T> = match self.format {
            Format::Python => return Err(ConfigError::new("this plugin takes a JSON or YAML configuration, not a Python scenario")),
            Format::Json => serde_json::from_str(&self.text).map_err(|e| ConfigError::located(e.to_string(), e.line(), e.column()))?,
            Format::Yaml => serde_yaml_ng::from_str(&self.text).map_err(|e| {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                ConfigError::located(e.to_string(), line, column)
            })?,
        };
        Ok((split.rest, split.common))
    }
}

impl From<wit::PluginConfig> for ConfigFile {
    fn from(c: wit::PluginConfig) -> Self {
        let format = match c.format {
            wit::ConfigFormat::Json => Format::Json,
            wit::ConfigFormat::Yaml => Format::Yaml,
            wit::ConfigFormat::Python => Format::Python,
        };
        ConfigFile { text: c.text, format, file_name: c.file_name }
    }
}

/// Why a plugin refuses its configuration; the host shows it as `<file>:<line>:<column>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub message: String,
    /// From 1, when the error has a place in the file.
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl ConfigError {
    /// An error about the configuration as a whole (no place in the file).
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError { message: message.into(), line: None, column: None }
    }

    /// A parser's error: the position it appends to its message moves into the fields.
    fn located(message: String, line: usize, column: usize) -> Self {
        if line == 0 {
            return ConfigError::new(message);
        }
        let suffix = format!(" at line {line} column {column}");
        let message = message.strip_suffix(&suffix).map_or(message.clone(), str::to_string);
        ConfigError { message, line: u32::try_from(line).ok(), column: u32::try_from(column).ok() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l} column {c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl From<String> for ConfigError {
    fn from(message: String) -> Self {
        ConfigError::new(message)
    }
}

impl From<&str> for ConfigError {
    fn from(message: &str) -> Self {
        ConfigError::new(message)
    }
}

impl From<ConfigError> for wit::ConfigError {
    fn from(e: ConfigError) -> Self {
        wit::ConfigError { message: e.message, line: e.line, column: e.column }
    }
}

/// The configuration keys every plugin understands.
#[derive(Debug, Default, Clone)]
pub(crate) struct CommonConfig {
    /// Lets an operator retarget any plugin.
    pub(crate) selector: Option<String>,
    /// How long init containers run, when set.
    pub(crate) init_container: Option<Duration>,
    /// How long containers of pods that do not restart them run, when set.
    pub(crate) run_to_completion: Option<Duration>,
}

impl CommonConfig {
    /// How long finishing containers run: the defaults, with what the file sets.
    pub(crate) fn completion(&self) -> Completion {
        let default = Completion::default();
        Completion { init: self.init_container.unwrap_or(default.init), run_to_completion: self.run_to_completion.unwrap_or(default.run_to_completion) }
    }
}

/// A common key, as met in the file.
#[derive(Clone, Copy)]
enum CommonKey {
    Selector,
    InitContainerSeconds,
    RunToCompletionSeconds,
}

impl CommonKey {
    fn of(key: &str) -> Option<Self> {
        match key {
            "selector" => Some(CommonKey::Selector),
            "initContainerSeconds" => Some(CommonKey::InitContainerSeconds),
            "runToCompletionSeconds" => Some(CommonKey::RunToCompletionSeconds),
            _ => None,
        }
    }
}

/// The configuration split into the common keys and the scenario's type.
struct Split<T> {
    common: CommonConfig,
    rest: T,
}

impl<'de, T: DeserializeOwned + Default> serde::Deserialize<'de> for Split<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SplitVisitor(std::marker::PhantomData))
    }
}

struct SplitVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: DeserializeOwned + Default> Visitor<'de> for SplitVisitor<T> {
    type Value = Split<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map of configuration keys")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Split<T>, E> {
        Ok(Split { common: CommonConfig::default(), rest: T::default() })
    }

    /// A YAML file of comments only.
    fn visit_none<E: de::Error>(self) -> Result<Split<T>, E> {
        self.visit_unit()
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Split<T>, A::Error> {
        let mut others = WithoutCommon { inner: map, common: CommonConfig::default() };
        let rest = T::deserialize(de::value::MapAccessDeserializer::new(&mut others))?;
        // A type may stop reading before the end of the map: the common keys after it still count.
        let mut remaining = &mut others;
        while remaining.next_key::<IgnoredAny>()?.is_some() {
            remaining.next_value::<IgnoredAny>()?;
        }
        Ok(Split { common: others.common, rest })
    }
}

/// The file's top-level map with the common keys taken out as they pass. The scenario's
/// type reads straight from the parser, so its errors keep their place in the file.
struct WithoutCommon<A> {
    inner: A,
    common: CommonConfig,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for &mut WithoutCommon<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            match self.inner.next_key_seed(KeySeed(&mut seed))? {
                None => return Ok(None),
                Some(Key::Other(value)) => return Ok(Some(value)),
                Some(Key::Common(CommonKey::Selector)) => self.common.selector = Some(self.inner.next_value()?),
                Some(Key::Common(CommonKey::InitContainerSeconds)) => self.common.init_container = Some(self.inner.next_value::<Seconds>()?.0),
                Some(Key::Common(CommonKey::RunToCompletionSeconds)) => self.common.run_to_completion = Some(self.inner.next_value::<Seconds>()?.0),
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

enum Key<V> {
    Common(CommonKey),
    Other(V),
}

/// Reads a key in the parser's own string visit, so an error about it (an unknown field)
/// is placed at the key.
struct KeySeed<'a, K>(&'a mut Option<K>);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a configuration key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(common) = CommonKey::of(key) {
            return Ok(Key::Common(common));
        }
        let seed = self.0.take().ok_or_else(|| E::custom("a configuration key was read twice"))?;
        seed.deserialize(de::value::StrDeserializer::<E>::new(key)).map(Key::Other)
    }
}

/// A number of seconds, zero or more.
struct Seconds(Duration);

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_f64(SecondsVisitor)
    }
}

/// Checks the number in the parser's own visit, so the error is placed at the value.
struct SecondsVisitor;

impl Visitor<'_> for SecondsVisitor {
    type Value = Seconds;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number of seconds (0 or more)")
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Seconds, E> {
        if n.is_finite() && n >= 0.0 { Ok(Seconds(Duration::from_secs_f64(n))) } else { Err(E::custom(format!("{n} is not a number of seconds (0 or more)"))) }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seconds, E> {
        Ok(Seconds(Duration::from_secs(n)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seconds, E> {
        u64::try_from(n).map(|n| Seconds(Duration::from_secs(n))).map_err(|_| E::custom(format!("{n} is not a number of seconds (0 or more)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Rules {
        #[serde(default)]
        rules: Vec<Rule>,
    }

    #[derive(serde::Deserialize, Default, Debug)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Rule {
        exit: Option<u32>,
        after_seconds: Option<u64>,
    }

    #[test]
    fn the_scenario_gets_its_keys() {
        let rules: Rules = ConfigFile::yaml("rules:\n  - exit: 2\n    afterSeconds: 10\n").parse().unwrap();
        assert_eq!((rules.rules[0].exit, rules.rules[0].after_seconds), (Some(2), Some(10)));
    }

    #[test]
    fn a_typo_in_a_nested_rule_is_placed_at_its_line_in_the_yaml() {
        let yaml = "# lab 3\nselector: app=slow\nrules:\n  - exit: 2\n    afterSeconds: 10\n  - exitt: 2\n";
        let e = ConfigFile::yaml(yaml).parse::<Rules>().unwrap_err();
        assert_eq!(e.message, "rules[1]: unknown field `exitt`, expected `exit` or `afterSeconds`");
        assert_eq!((e.line, e.column), (Some(6), Some(5)));
    }

    #[test]
    fn a_typo_at_the_top_is_placed_at_its_key_in_json_and_yaml() {
        let e = ConfigFile::json("{\"selector\": \"a=b\",\n \"rulez\": []}").parse::<Rules>().unwrap_err();
        assert_eq!((e.message.as_str(), e.line, e.column), ("unknown field `rulez`, expected `rules`", Some(2), Some(8)));
        let e = ConfigFile::yaml("selector: a=b\nrulez: []\n").parse::<Rules>().unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(1)));
    }

    #[test]
    fn the_common_keys_are_read_beside_the_scenario_keys() {
        let config = ConfigFile::yaml("rules: []\nselector: tier=db\ninitContainerSeconds: 2.5\n");
        let common = config.common().unwrap();
        assert_eq!(common.selector.as_deref(), Some("tier=db"));
        assert_eq!(common.init_container, Some(Duration::from_millis(2500)));
        assert!(config.parse::<Rules>().unwrap().rules.is_empty());
        let e = ConfigFile::yaml("rules: []\nrunToCompletionSeconds: -1\n").common().unwrap_err();
        assert_eq!((e.message.as_str(), e.line), ("runToCompletionSeconds: -1 is not a number of seconds (0 or more)", Some(2)));
        let e = ConfigFile::yaml("selector: [a]\n").common().unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn no_file_an_empty_file_and_null_give_the_defaults() {
        for config in [ConfigFile::default(), ConfigFile::yaml("# nothing yet\n"), ConfigFile::yaml("~\n"), ConfigFile::json("null")] {
            assert!(config.parse::<Rules>().unwrap().rules.is_empty());
            assert!(config.common().unwrap().selector.is_none());
        }
    }

    #[test]
    fn a_file_that_is_not_a_map_says_so() {
        let e = ConfigFile::yaml("- a\n- b\n").parse::<Rules>().unwrap_err();
        assert!(e.message.contains("expected a map of configuration keys"), "{e}");
    }
}

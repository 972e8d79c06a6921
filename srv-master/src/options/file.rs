//! Config files: [`Options`] from TOML or JSON text, with errors that name
//! the dotted key (`worker.count`).
//!
//! # How the key gets into the error
//!
//! `Options` is deserialized straight from the format's own deserializer,
//! wrapped by `serde_path_to_error`, which records the path of map keys and
//! array indices down to the value that failed. The key of the error is that
//! path with the array indices left out (an option's name: `listen.allow`,
//! the index goes into the problem instead), so the list of known keys is
//! the one serde derives from the structs (every options struct has
//! `deny_unknown_fields`), and a new option needs no change here.
//!
//! Syntax errors are not about a key: they keep the format's own message
//! with its line. Values are then checked by [`Options::validate`], which
//! names its keys itself.

use std::path::Path;

use serde_path_to_error::{Path as KeyPath, Segment};

use super::{Options, OptionsError};

impl Options {
    /// Options from TOML text, with the node module's dotted names as tables:
    /// `[worker]` then `count = 4` is `worker.count`. Durations are whole
    /// milliseconds; missing keys keep their defaults.
    ///
    /// ```
    /// use std::time::Duration;
    /// use srv_master::Options;
    ///
    /// let options = Options::from_toml_str(
    ///     "[worker]\n\
    ///      count = 8\n\
    ///      require = \"listen\"\n\
    ///      [shutdown]\n\
    ///      timeout = 30000\n",
    /// )?;
    /// assert_eq!(options.worker.count, 8);
    /// assert_eq!(options.shutdown.timeout, Duration::from_secs(30));
    /// assert_eq!(options.recycle.timeout, Duration::from_secs(15)); // the default
    ///
    /// let error = Options::from_toml_str("[worker]\ncont = 8\n").unwrap_err();
    /// assert_eq!(error.key(), Some("worker.cont"));
    /// # Ok::<(), srv_master::OptionsError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Invalid TOML (no [`key`](OptionsError::key), and the problem gives the line), an
    /// unknown key, a value of the wrong type, or a value
    /// [`Options::validate`] refuses; `key` names the option.
    pub fn from_toml_str(text: &str) -> Result<Options, OptionsError> {
        let syntax = |error: toml::de::Error| OptionsError::general(error.to_string().trim_end());
        let deserializer = toml::Deserializer::parse(text).map_err(syntax)?;
        let options = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let (key, index) = option_key(error.path());
            let inner = error.into_inner();
            // The message alone, with its place: the full `Display` spans
            // several lines with a snippet of the file, too much for a log line.
            let place = inner.span().map(|span| line_and_column(text, span.start));
            let mut problem = format!("{index}{}", inner.message());
            if let Some((line, column)) = place {
                problem.push_str(&format!(" (line {line}, column {column})"));
            }
            OptionsError::with_key(key, &problem)
        })?;
        Options::validated(options)
    }

    /// Options from JSON text: an object of objects, `{"worker": {"count":
    /// 4}}`. Otherwise as [`Options::from_toml_str`].
    ///
    /// ```
    /// use srv_master::Options;
    ///
    /// let options = Options::from_json_str(r#"{ "worker": { "count": 2 } }"#)?;
    /// assert_eq!(options.worker.count, 2);
    ///
    /// let error = Options::from_json_str(r#"{ "worker": { "count": 0 } }"#).unwrap_err();
    /// assert_eq!(error.key(), Some("worker.count"));
    /// assert_eq!(error.to_string(), "invalid option worker.count: must be at least 1");
    /// # Ok::<(), srv_master::OptionsError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Options::from_toml_str`], for JSON.
    pub fn from_json_str(text: &str) -> Result<Options, OptionsError> {
        let syntax = |error| OptionsError::general(&format!("JSON parse error: {error}"));
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let options: Options =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let (key, index) = option_key(error.path());
                let inner = error.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    syntax(inner)
                } else {
                    OptionsError::with_key(key, &format!("{index}{inner}"))
                }
            })?;
        // Characters after the value are a syntax error too.
        deserializer.end().map_err(syntax)?;
        Options::validated(options)
    }

    /// Options from a config file: TOML when the name ends in `.toml`, JSON
    /// when it ends in `.json`. Errors carry the path in
    /// [`OptionsError::file`].
    ///
    /// ```no_run
    /// let options = srv_master::Options::from_file("/etc/my-server/srv.toml")?;
    /// srv_master::Master::current_exe(options)?.run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// ```
    /// let error = srv_master::Options::from_file("srv.yaml").unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "srv.yaml: unknown config file format: the name must end in .toml or .json"
    /// );
    /// ```
    ///
    /// # Errors
    ///
    /// Another extension, the file cannot be read, or what
    /// [`Options::from_toml_str`] and [`Options::from_json_str`] refuse.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Options, OptionsError> {
        let path = path.as_ref();
        let in_file = |mut error: OptionsError| {
            error.file = Some(path.to_owned());
            error
        };
        let extension = path.extension().and_then(|extension| extension.to_str());
        let parse = match extension {
            Some(extension) if extension.eq_ignore_ascii_case("toml") => Options::from_toml_str,
            Some(extension) if extension.eq_ignore_ascii_case("json") => Options::from_json_str,
            _ => {
                let problem = "unknown config file format: the name must end in .toml or .json";
                return Err(in_file(OptionsError::general(problem)));
            }
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| in_file(OptionsError::general(&format!("cannot read: {error}"))))?;
        parse(&text).map_err(in_file)
    }

    fn validated(options: Options) -> Result<Options, OptionsError> {
        options.validate()?;
        Ok(options)
    }
}

/// The option a deserialization error is about: the dotted map keys of
/// `path` (`listen.allow`), and a prefix for the problem naming the array
/// item, if any (`item 2: `, counting from 1 as people do).
fn option_key(path: &KeyPath) -> (Option<String>, String) {
    let mut key = String::new();
    let mut index = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Map { key: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Segment::Seq { index: at } => index = format!("item {}: ", at + 1),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    (Some(key).filter(|key| !key.is_empty()), index)
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Require;

    fn toml_error(text: &str) -> OptionsError {
        Options::from_toml_str(text).expect_err(text)
    }

    fn json_error(text: &str) -> OptionsError {
        Options::from_json_str(text).expect_err(text)
    }

    #[test]
    fn toml_nested_tables_set_the_dotted_names() {
        let options = Options::from_toml_str(
            "[worker]\n\
             count = 3\n\
             ignore_sigint = false\n\
             require = \"listen\"\n\
             timeout = 500\n\
             max_start_failures = 10\n\
             watchdog = 5000\n\
             max_rss = 512\n\
             max_age = 3600000\n\
             [recycle]\n\
             timeout = 1000\n\
             [shutdown]\n\
             timeout = 2000\n\
             [restart]\n\
             delay = 100\n\
             max_delay = 400\n",
        )
        .unwrap();
        let mut expected = Options::default();
        expected.worker.count = 3;
        expected.worker.ignore_sigint = false;
        expected.worker.require = Require::Listen;
        expected.worker.timeout = Duration::from_millis(500);
        expected.worker.max_start_failures = 10;
        expected.worker.watchdog = Some(Duration::from_secs(5));
        expected.worker.max_rss = Some(512);
        expected.worker.max_age = Some(Duration::from_secs(3600));
        expected.recycle.timeout = Duration::from_millis(1000);
        expected.shutdown.timeout = Duration::from_millis(2000);
        expected.restart.delay = Duration::from_millis(100);
        expected.restart.max_delay = Duration::from_millis(400);
        assert_eq!(options, expected);
        // Dotted keys are the same thing in TOML.
        let dotted = Options::from_toml_str("worker.count = 3\nrecycle.timeout = 1000\n").unwrap();
        assert_eq!(dotted.worker.count, 3);
        assert_eq!(dotted.recycle.timeout, Duration::from_millis(1000));
    }

    #[test]
    fn strings_arrays_and_optional_values() {
        let options = Options::from_toml_str(
            "[worker]\n\
             user = \"www-data\"\n\
             [listen]\n\
             allow = [\"0.0.0.0:80\", \"unix:/run/app.sock\"]\n",
        )
        .unwrap();
        assert_eq!(options.worker.user.as_deref(), Some("www-data"));
        assert_eq!(options.worker.group, None);
        let allow: Vec<String> = options.listen.allow.iter().map(ToString::to_string).collect();
        assert_eq!(allow, ["0.0.0.0:80", "unix:/run/app.sock"]);
        let options = Options::from_json_str(r#"{"worker": {"user": null}}"#).unwrap();
        assert_eq!(options.worker.user, None);

        let error = toml_error("[listen]\nallow = [\"0.0.0.0:80\", \"nowhere\"]\n");
        assert_eq!(error.key(), Some("listen.allow"), "{error}");
        assert_eq!(toml_error("[listen]\nallow = \"0.0.0.0:80\"\n").key(), Some("listen.allow"));
        assert_eq!(toml_error("[worker]\nuser = \"\"\n").key(), Some("worker.user"));
    }

    #[test]
    fn unix_mode_is_an_octal_string() {
        for (text, mode) in [("0660", 0o660), ("666", 0o666), ("0o600", 0o600), ("0", 0)] {
            let options = Options::from_toml_str(&format!("[listen]\nunix_mode = \"{text}\"\n"));
            assert_eq!(options.unwrap().listen.unix_mode, Some(mode), "{text}");
        }
        let options = Options::from_json_str(r#"{"listen": {"unix_mode": "0640"}}"#).unwrap();
        assert_eq!(options.listen.unix_mode, Some(0o640));
        for bad in ["\"0680\"", "\"rw-rw----\"", "\"\"", "432", "\"-1\""] {
            let error = toml_error(&format!("[listen]\nunix_mode = {bad}\n"));
            assert_eq!(error.key(), Some("listen.unix_mode"), "{bad}: {error}");
        }
        let error = toml_error("[listen]\nunix_mode = \"01777\"\n");
        assert_eq!(
            error.to_string(),
            "invalid option listen.unix_mode: must be at most 0777 (permission bits only)"
        );
    }

    #[test]
    fn missing_keys_keep_their_defaults() {
        assert_eq!(Options::from_toml_str("").unwrap(), Options::default());
        assert_eq!(Options::from_toml_str("[worker]\n").unwrap(), Options::default());
        assert_eq!(Options::from_json_str("{}").unwrap(), Options::default());
        let options = Options::from_toml_str("[worker]\ncount = 7\n").unwrap();
        assert_eq!(options.worker.count, 7);
        assert_eq!(options.worker.timeout, Options::default().worker.timeout);
        assert_eq!(options.shutdown, Options::default().shutdown);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let error = toml_error("[worker]\ncont = 3\n");
        assert_eq!(error.key(), Some("worker.cont"));
        assert!(error.problem().starts_with("unknown field `cont`, expected one of"), "{error}");
        assert!(error.problem().contains("`count`"), "{error}");
        assert!(error.to_string().starts_with("invalid option worker.cont: "), "{error}");
        assert_eq!(toml_error("[workers]\ncount = 3\n").key(), Some("workers"));
        assert_eq!(toml_error("colour = \"blue\"\n").key(), Some("colour"));
        assert_eq!(
            json_error(r#"{"restart": {"delay": 1, "dealy": 2}}"#).key(),
            Some("restart.dealy")
        );
    }

    #[test]
    fn invalid_values_are_named() {
        let error = toml_error("[worker]\ncount = 0\n");
        assert_eq!(error.key(), Some("worker.count"));
        assert_eq!(error.to_string(), "invalid option worker.count: must be at least 1");
        assert_eq!(toml_error("[worker]\ntimeout = 0\n").key(), Some("worker.timeout"));
        assert_eq!(toml_error("[shutdown]\ntimeout = 0\n").key(), Some("shutdown.timeout"));
        assert_eq!(json_error(r#"{"recycle": {"timeout": 0}}"#).key(), Some("recycle.timeout"));
        assert_eq!(toml_error("[worker]\ncount = 100000\n").key(), Some("worker.count"));
        let error = toml_error("[restart]\ndelay = 9000\nmax_delay = 1000\n");
        assert_eq!(error.key(), Some("restart.max_delay"));
        // "Off" is a missing key; a zero is a typo, not a way to say it.
        let error = toml_error("[worker]\nwatchdog = 0\n");
        assert_eq!(error.to_string(), "invalid option worker.watchdog: must be at least 1000 ms");
        assert_eq!(toml_error("[worker]\nmax_age = 60\n").key(), Some("worker.max_age"));
        assert_eq!(json_error(r#"{"worker": {"max_rss": 0}}"#).key(), Some("worker.max_rss"));
    }

    #[test]
    fn wrong_types_are_named() {
        let cases = [
            ("[worker]\ncount = \"three\"\n", "worker.count", "invalid type: string \"three\""),
            ("[worker]\ncount = -1\n", "worker.count", "invalid value: integer `-1`"),
            ("[worker]\ncount = 2.5\n", "worker.count", "invalid type: floating point `2.5`"),
            ("[worker]\nignore_sigint = 1\n", "worker.ignore_sigint", "invalid type: integer"),
            ("[worker]\nrequire = \"ready\"\n", "worker.require", "unknown variant `ready`"),
            ("[worker]\nrequire = 1\n", "worker.require", "invalid type: integer `1`"),
            ("[shutdown]\ntimeout = \"15s\"\n", "shutdown.timeout", "invalid type: string"),
            ("[shutdown]\ntimeout = [1]\n", "shutdown.timeout", "invalid type: sequence"),
            ("[worker]\nwatchdog = \"5s\"\n", "worker.watchdog", "invalid type: string"),
            ("[worker]\nmax_rss = -1\n", "worker.max_rss", "invalid value: integer `-1`"),
            ("[worker]\nmax_age = 1.5\n", "worker.max_age", "invalid type: floating point"),
            ("worker = 4\n", "worker", "invalid type: integer `4`, expected struct"),
        ];
        for (text, key, problem) in cases {
            let error = toml_error(text);
            assert_eq!(error.key(), Some(key), "{text:?}: {error}");
            assert!(error.problem().starts_with(problem), "{text:?}: {error}");
        }
    }

    #[test]
    fn json_is_the_same() {
        let options = Options::from_json_str(
            r#"{"worker": {"count": 3, "require": "listen"}, "shutdown": {"timeout": 20000}}"#,
        )
        .unwrap();
        assert_eq!(options.worker.count, 3);
        assert_eq!(options.worker.require, Require::Listen);
        assert_eq!(options.shutdown.timeout, Duration::from_secs(20));
        assert_eq!(options.recycle, Options::default().recycle);

        assert_eq!(json_error(r#"{"worker": {"cont": 3}}"#).key(), Some("worker.cont"));
        assert_eq!(json_error(r#"{"worker": {"count": 0}}"#).key(), Some("worker.count"));
        let error = json_error(r#"{"worker": {"count": "3"}}"#);
        assert_eq!(error.key(), Some("worker.count"));
        assert!(error.problem().starts_with("invalid type: string \"3\""), "{error}");
        let error = json_error(r#"{"worker": {"count": 18446744073709551615}}"#);
        assert_eq!(error.key(), Some("worker.count"), "{error}");
        assert_eq!(json_error(r#"{"worker": {"timeout": null}}"#).key(), Some("worker.timeout"));
        assert_eq!(json_error("[1, 2]").key(), None);
    }

    #[test]
    fn places_count_lines_and_characters_from_one() {
        assert_eq!(line_and_column("", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_and_column("é\nx = 1", 3), (2, 1));
        assert_eq!(line_and_column("éé", 3), (1, 2)); // inside a character: its start
        assert_eq!(line_and_column("ab", 99), (1, 3));
    }

    #[test]
    fn array_items_are_named_in_the_problem() {
        let error = toml_error("[listen]\nallow = [\"0.0.0.0:80\", \"nowhere\"]\n");
        assert_eq!(error.key(), Some("listen.allow"));
        assert!(error.problem().starts_with("item 2: "), "{error}");
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let error = toml_error("[worker]\ncount = \n");
        assert_eq!(error.key(), None);
        assert!(error.problem().contains("line 2"), "{error}");
        assert!(!error.to_string().starts_with("invalid option"), "{error}");
        // A key given twice is an error of the table that has it twice.
        let error = json_error("{\"worker\": {\"count\": 1, \"count\": 2}}");
        assert_eq!(error.key(), Some("worker"), "{error}");
        assert!(error.problem().starts_with("duplicate field `count`"), "{error}");
        assert!(error.problem().contains("line 1"), "{error}");
        let error = json_error("{\"worker\": {\"count\": 3,}}");
        assert_eq!(error.key(), None);
        assert!(error.problem().starts_with("JSON parse error: "), "{error}");
        assert!(error.problem().contains("line 1"), "{error}");
    }

    #[test]
    fn files_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("srv.toml");
        std::fs::write(&toml, "[worker]\ncount = 5\n").unwrap();
        assert_eq!(Options::from_file(&toml).unwrap().worker.count, 5);
        let json = dir.path().join("srv.JSON");
        std::fs::write(&json, r#"{"worker": {"count": 6}}"#).unwrap();
        assert_eq!(Options::from_file(&json).unwrap().worker.count, 6);

        std::fs::write(&toml, "[worker]\ncont = 5\n").unwrap();
        let error = Options::from_file(&toml).unwrap_err();
        assert_eq!(error.key(), Some("worker.cont"));
        assert_eq!(error.file(), Some(toml.as_path()));
        let shown = error.to_string();
        assert!(shown.starts_with(&format!("{}: invalid option worker.cont: ", toml.display())));

        let missing = dir.path().join("missing.toml");
        let error = Options::from_file(&missing).unwrap_err();
        assert_eq!((error.key(), error.file()), (None, Some(missing.as_path())));
        assert!(error.problem().starts_with("cannot read: "), "{error}");
        let error = Options::from_file(dir.path().join("srv.yaml")).unwrap_err();
        assert!(error.problem().starts_with("unknown config file format"), "{error}");
    }
}

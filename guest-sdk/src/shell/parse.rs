//! The shell's grammar: a POSIX `sh` subset parsed into a [`Script`].
//!
//! Lists (`;`, newlines, `&`), `&&` and `||`, pipelines (`|`, `!`), `{ …; }` and `( … )`,
//! `if`/`elif`/`else`, `while`, `until`, `for … in …`, redirections (`>`, `>>`, `<`, `2>&1`,
//! `>&2`, `2>/dev/null`), assignments, comments, and words with single and double quotes,
//! backslashes, `$VAR`, `${VAR}`, `${VAR:-default}`, `$?`, `$$`, `$#`, `$0`…`$9`,
//! `$(command)`, backquotes and `$((arithmetic))`. Input is bounded in size and nesting, so
//! nothing a pod spec holds makes the parser recurse without end.

use serde::{Deserialize, Serialize};

/// The longest script the parser takes, in bytes.
pub const MAX_SCRIPT: usize = 64 * 1024;
/// How deep compound commands and substitutions may nest.
const MAX_DEPTH: usize = 48;

/// A list of commands, run in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Script(pub Vec<AndOr>);

/// Pipelines joined by `&&` and `||`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AndOr {
    pub first: Pipeline,
    pub rest: Vec<(Connector, Pipeline)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Connector {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub negated: bool,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Simple { assigns: Vec<(String, Word)>, words: Vec<Word>, redirects: Vec<Redirect> },
    Group(Script, Vec<Redirect>),
    Subshell(Script, Vec<Redirect>),
    If { branches: Vec<(Script, Script)>, otherwise: Option<Script>, redirects: Vec<Redirect> },
    Loop { until: bool, cond: Script, body: Script, redirects: Vec<Redirect> },
    For { var: String, items: Option<Vec<Word>>, body: Script, redirects: Vec<Redirect> },
}

impl Command {
    pub fn redirects(&self) -> &[Redirect] {
        match self {
            Command::Simple { redirects, .. }
            | Command::Group(_, redirects)
            | Command::Subshell(_, redirects)
            | Command::If { redirects, .. }
            | Command::Loop { redirects, .. }
            | Command::For { redirects, .. } => redirects,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redirect {
    pub fd: u32,
    pub op: RedirectOp,
    pub target: Word,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedirectOp {
    /// `>`
    Write,
    /// `>>`
    Append,
    /// `<`
    Read,
    /// `>&N`
    Dup,
}

/// A word: its parts, expanded and joined at run time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Word(pub Vec<Part>);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Part {
    /// Unquoted text: split into fields only where it came from an expansion.
    Literal(String),
    /// Quoted text: taken as it is.
    Quoted(String),
    /// `$NAME`, `${NAME}`, `${NAME:-word}`; `quoted` inside double quotes.
    Var { name: String, default: Option<Box<Word>>, quoted: bool },
    /// `$(…)` or backquotes.
    Command { script: Script, quoted: bool },
    /// `$((…))`, evaluated as arithmetic.
    Arith { expr: String, quoted: bool },
}

impl Word {
    /// The word's text when it is a plain literal (a reserved word or a name), else `None`.
    pub fn literal(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }
}

/// Why a script does not parse, in `sh`'s words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "syntax error: {}", self.0)
    }
}

/// Parses a script.
pub fn parse(text: &str) -> Result<Script, SyntaxError> {
    if text.len() > MAX_SCRIPT {
        return Err(SyntaxError(format!("script longer than {MAX_SCRIPT} bytes")));
    }
    let mut p = Parser { chars: text.chars().collect(), pos: 0, depth: 0 };
    let script = p.list(&[])?;
    p.skip_blanks_and_newlines();
    match p.peek() {
        None => Ok(script),
        Some(_) => Err(SyntaxError(format!("unexpected \"{}\"", p.token_text()))),
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

const RESERVED_ENDS: &[&str] = &["then", "else", "elif", "fi", "do", "done", "}"];

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n && self.chars[self.pos..self.pos + n].iter().copied().eq(s.chars()) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn deeper(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(SyntaxError("nested too deeply".into())) } else { Ok(()) }
    }

    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r') => self.pos += 1,
                Some('\\') if self.peek_at(1) == Some('\n') => self.pos += 2,
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn skip_blanks_and_newlines(&mut self) {
        loop {
            self.skip_blanks();
            if self.peek() == Some('\n') || self.peek() == Some(';') && self.peek_at(1) != Some(';') {
                self.pos += 1;
            } else {
                return;
            }
        }
    }

    /// The next token's text, for an error message.
    fn token_text(&self) -> String {
        let rest: String = self.chars[self.pos..].iter().take_while(|c| !c.is_whitespace()).take(20).collect();
        if rest.is_empty() { "end of file".into() } else { rest }
    }

    /// The reserved word at the cursor, if one starts here.
    fn reserved(&self) -> Option<&'static str> {
        const WORDS: &[&str] = &["if", "then", "else", "elif", "fi", "while", "until", "for", "do", "done", "in", "{", "}", "!"];
        WORDS.iter().copied().find(|w| {
            let n = w.chars().count();
            self.chars.len() >= self.pos + n
                && self.chars[self.pos..self.pos + n].iter().copied().eq(w.chars())
                && self.chars.get(self.pos + n).is_none_or(|c| c.is_whitespace() || ";&|()<>".contains(*c))
        })
    }

    /// A list, up to one of `ends` (a reserved word), a `)` or the end.
    fn list(&mut self, ends: &[&str]) -> Result<Script, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_blanks_and_newlines();
            match self.peek() {
                None | Some(')') => break,
                _ if self.reserved().is_some_and(|w| ends.contains(&w) || RESERVED_ENDS.contains(&w)) => break,
                _ => {}
            }
            items.push(self.and_or()?);
            self.skip_blanks();
            match self.peek() {
                Some(';' | '\n') if !(self.peek() == Some(';') && self.peek_at(1) == Some(';')) => self.pos += 1,
                // A background job runs to its end before the next command: the shell has one
                // process at a time.
                Some('&') if self.peek_at(1) != Some('&') => self.pos += 1,
                _ => {}
            }
        }
        Ok(Script(items))
    }

    fn and_or(&mut self) -> Result<AndOr, SyntaxError> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            self.skip_blanks();
            let connector = if self.eat("&&") {
                Connector::And
            } else if self.eat("||") {
                Connector::Or
            } else {
                break;
            };
            self.skip_blanks_and_newlines();
            rest.push((connector, self.pipeline()?));
        }
        Ok(AndOr { first, rest })
    }

    fn pipeline(&mut self) -> Result<Pipeline, SyntaxError> {
        self.skip_blanks();
        let negated = self.reserved() == Some("!");
        if negated {
            self.pos += 1;
        }
        let mut commands = vec![self.command()?];
        loop {
            self.skip_blanks();
            if self.peek() == Some('|') && self.peek_at(1) != Some('|') {
                self.pos += 1;
                self.skip_blanks_and_newlines();
                commands.push(self.command()?);
            } else {
                break;
            }
        }
        Ok(Pipeline { negated, commands })
    }

    fn expect_word(&mut self, word: &str) -> Result<(), SyntaxError> {
        self.skip_blanks_and_newlines();
        if self.reserved() == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(SyntaxError(format!("unexpected \"{}\" (expecting \"{word}\")", self.token_text())))
        }
    }

    fn command(&mut self) -> Result<Command, SyntaxError> {
        self.skip_blanks();
        self.deeper()?;
        let command = match self.reserved() {
            Some("if") => self.if_clause()?,
            Some(w @ ("while" | "until")) => {
                self.pos += w.len();
                let cond = self.list(&["do"])?;
                self.expect_word("do")?;
                let body = self.list(&[])?;
                self.expect_word("done")?;
                Command::Loop { until: w == "until", cond, body, redirects: self.redirects()? }
            }
            Some("for") => self.for_clause()?,
            Some("{") => {
                self.pos += 1;
                let body = self.list(&[])?;
                self.expect_word("}")?;
                Command::Group(body, self.redirects()?)
            }
            Some(w) if RESERVED_ENDS.contains(&w) || w == "in" => return Err(SyntaxError(format!("unexpected \"{w}\""))),
            _ if self.peek() == Some('(') => {
                self.pos += 1;
                let body = self.list(&[])?;
                self.skip_blanks_and_newlines();
                if !self.eat(")") {
                    return Err(SyntaxError(format!("unexpected \"{}\" (expecting \")\")", self.token_text())));
                }
                Command::Subshell(body, self.redirects()?)
            }
            _ => self.simple()?,
        };
        self.depth -= 1;
        Ok(command)
    }

    /// `if … then … [elif …] [else …] fi`, from its `if`.
    fn if_clause(&mut self) -> Result<Command, SyntaxError> {
        self.pos += 2;
        let mut branches = Vec::new();
        let mut otherwise = None;
        loop {
            let cond = self.list(&["then"])?;
            self.expect_word("then")?;
            let body = self.list(&[])?;
            branches.push((cond, body));
            self.skip_blanks_and_newlines();
            match self.reserved() {
                Some("elif") => self.pos += 4,
                Some("else") => {
                    self.pos += 4;
                    otherwise = Some(self.list(&[])?);
                    self.expect_word("fi")?;
                    break;
                }
                _ => {
                    self.expect_word("fi")?;
                    break;
                }
            }
        }
        Ok(Command::If { branches, otherwise, redirects: self.redirects()? })
    }

    /// `for NAME [in WORDS]; do … done`, from its `for`.
    fn for_clause(&mut self) -> Result<Command, SyntaxError> {
        self.pos += 3;
        self.skip_blanks();
        let var = self.word()?.and_then(|w| w.literal().map(str::to_string)).filter(|n| is_name(n));
        let var = var.ok_or_else(|| SyntaxError("bad for loop variable".into()))?;
        self.skip_blanks_and_newlines();
        let items = if self.reserved() == Some("in") {
            self.pos += 2;
            let mut items = Vec::new();
            loop {
                self.skip_blanks();
                if matches!(self.peek(), Some(';' | '\n') | None) {
                    break;
                }
                match self.word()? {
                    Some(w) => items.push(w),
                    None => break,
                }
            }
            Some(items)
        } else {
            None
        };
        self.expect_word("do")?;
        let body = self.list(&[])?;
        self.expect_word("done")?;
        Ok(Command::For { var, items, body, redirects: self.redirects()? })
    }

    fn simple(&mut self) -> Result<Command, SyntaxError> {
        let (mut assigns, mut words, mut redirects) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            self.skip_blanks();
            if let Some(r) = self.redirect()? {
                redirects.push(r);
                continue;
            }
            if words.is_empty()
                && let Some(assign) = self.assignment()?
            {
                assigns.push(assign);
                continue;
            }
            match self.word()? {
                Some(w) => words.push(w),
                None => break,
            }
        }
        if assigns.is_empty() && words.is_empty() && redirects.is_empty() {
            return Err(SyntaxError(format!("unexpected \"{}\"", self.token_text())));
        }
        Ok(Command::Simple { assigns, words, redirects })
    }

    fn assignment(&mut self) -> Result<Option<(String, Word)>, SyntaxError> {
        let start = self.pos;
        let name: String = self.chars[self.pos..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
        if !is_name(&name) || self.peek_at(name.chars().count()) != Some('=') {
            return Ok(None);
        }
        self.pos += name.chars().count() + 1;
        let value = self.word()?.unwrap_or_default();
        if self.pos == start {
            return Ok(None);
        }
        Ok(Some((name, value)))
    }

    fn redirects(&mut self) -> Result<Vec<Redirect>, SyntaxError> {
        let mut all = Vec::new();
        loop {
            self.skip_blanks();
            match self.redirect()? {
                Some(r) => all.push(r),
                None => return Ok(all),
            }
        }
    }

    fn redirect(&mut self) -> Result<Option<Redirect>, SyntaxError> {
        let start = self.pos;
        let fd = match self.peek() {
            Some(c @ '0'..='9') if matches!(self.peek_at(1), Some('>' | '<')) => {
                self.pos += 1;
                c.to_digit(10)
            }
            _ => None,
        };
        let op = if self.eat(">>") {
            RedirectOp::Append
        } else if self.eat(">&") {
            RedirectOp::Dup
        } else if self.eat(">|") || self.eat(">") {
            RedirectOp::Write
        } else if self.eat("<&") {
            RedirectOp::Dup
        } else if self.eat("<") {
            RedirectOp::Read
        } else {
            self.pos = start;
            return Ok(None);
        };
        self.skip_blanks();
        let target = self.word()?.ok_or_else(|| SyntaxError(format!("unexpected \"{}\" after a redirection", self.token_text())))?;
        let fd = fd.unwrap_or(if op == RedirectOp::Read { 0 } else { 1 });
        Ok(Some(Redirect { fd, op, target }))
    }

    /// A word, or `None` at an operator, a newline or the end.
    fn word(&mut self) -> Result<Option<Word>, SyntaxError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let flush = |literal: &mut String, parts: &mut Vec<Part>| {
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(literal)));
            }
        };
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => break,
                '\'' => {
                    flush(&mut literal, &mut parts);
                    self.pos += 1;
                    let mut text = String::new();
                    loop {
                        match self.peek() {
                            None => return Err(SyntaxError("unterminated quoted string".into())),
                            Some('\'') => break,
                            Some(c) => text.push(c),
                        }
                        self.pos += 1;
                    }
                    self.pos += 1;
                    parts.push(Part::Quoted(text));
                }
                '"' => {
                    flush(&mut literal, &mut parts);
                    self.pos += 1;
                    self.double_quoted(&mut parts)?;
                }
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some('\n') => self.pos += 1,
                        Some(c) => {
                            flush(&mut literal, &mut parts);
                            parts.push(Part::Quoted(c.to_string()));
                            self.pos += 1;
                        }
                        None => literal.push('\\'),
                    }
                }
                '$' | '`' => {
                    flush(&mut literal, &mut parts);
                    match self.dollar(false)? {
                        Some(part) => parts.push(part),
                        None => literal.push('$'),
                    }
                }
                c => {
                    literal.push(c);
                    self.pos += 1;
                }
            }
        }
        flush(&mut literal, &mut parts);
        Ok((!parts.is_empty()).then_some(Word(parts)))
    }

    fn double_quoted(&mut self, parts: &mut Vec<Part>) -> Result<(), SyntaxError> {
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(SyntaxError("unterminated quoted string".into())),
                Some('"') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') if self.peek_at(1).is_some_and(|c| "$`\"\\\n".contains(c)) => {
                    if self.peek_at(1) != Some('\n') {
                        text.push(self.peek_at(1).unwrap_or('\\'));
                    }
                    self.pos += 2;
                }
                Some('$' | '`') => {
                    match self.dollar(true)? {
                        Some(part) => {
                            parts.push(Part::Quoted(std::mem::take(&mut text)));
                            parts.push(part);
                        }
                        None => text.push('$'),
                    }
                    continue;
                }
                Some(c) => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        parts.push(Part::Quoted(text));
        Ok(())
    }

    /// An expansion at `$` or a backquote, or `None` for a lone `$` (then consumed).
    fn dollar(&mut self, quoted: bool) -> Result<Option<Part>, SyntaxError> {
        if self.eat("`") {
            let start = self.pos;
            while self.peek().is_some_and(|c| c != '`') {
                self.pos += if self.peek() == Some('\\') { 2 } else { 1 };
            }
            if self.peek().is_none() {
                return Err(SyntaxError("unterminated backquote".into()));
            }
            let inner: String = self.chars[start..self.pos.min(self.chars.len())].iter().collect();
            self.pos += 1;
            return Ok(Some(Part::Command { script: self.nested(&inner)?, quoted }));
        }
        self.pos += 1;
        if self.eat("((") {
            let start = self.pos;
            let mut depth = 0usize;
            loop {
                match self.peek() {
                    None => return Err(SyntaxError("missing \"))\"".into())),
                    Some('(') => depth += 1,
                    Some(')') if depth == 0 && self.peek_at(1) == Some(')') => break,
                    Some(')') => depth = depth.saturating_sub(1),
                    _ => {}
                }
                self.pos += 1;
            }
            let expr: String = self.chars[start..self.pos].iter().collect();
            self.pos += 2;
            return Ok(Some(Part::Arith { expr, quoted }));
        }
        if self.eat("(") {
            self.deeper()?;
            let script = self.list(&[])?;
            self.skip_blanks_and_newlines();
            if !self.eat(")") {
                return Err(SyntaxError("missing \")\"".into()));
            }
            self.depth -= 1;
            return Ok(Some(Part::Command { script, quoted }));
        }
        if self.eat("{") {
            return self.braced(quoted).map(Some);
        }
        let name: String = match self.peek() {
            Some(c @ ('?' | '$' | '#' | '!' | '@' | '*' | '0'..='9')) => c.to_string(),
            _ => self.chars[self.pos..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect(),
        };
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) && name.len() > 1 {
            return Ok(None);
        }
        self.pos += name.chars().count();
        Ok(Some(Part::Var { name, default: None, quoted }))
    }

    /// `${name}` or `${name:-default}`, after its `${`.
    fn braced(&mut self, quoted: bool) -> Result<Part, SyntaxError> {
        let name: String = self.chars[self.pos..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_' || "?$#!@*".contains(**c)).collect();
        self.pos += name.chars().count();
        let default = if self.eat(":-") || self.eat("-") {
            let start = self.pos;
            let mut depth = 0usize;
            while let Some(c) = self.peek() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    _ => {}
                }
                self.pos += 1;
            }
            let inner: String = self.chars[start..self.pos].iter().collect();
            let mut sub = Parser { chars: inner.chars().collect(), pos: 0, depth: self.depth + 1 };
            if sub.depth > MAX_DEPTH {
                return Err(SyntaxError("nested too deeply".into()));
            }
            let mut word = Word::default();
            while sub.peek().is_some() {
                match sub.word()? {
                    Some(w) => word.0.extend(w.0),
                    None => {
                        word.0.push(Part::Quoted(sub.peek().map(String::from).unwrap_or_default()));
                        sub.pos += 1;
                    }
                }
            }
            Some(Box::new(word))
        } else {
            None
        };
        if !self.eat("}") || name.is_empty() {
            return Err(SyntaxError("bad substitution".into()));
        }
        Ok(Part::Var { name, default, quoted })
    }

    fn nested(&self, text: &str) -> Result<Script, SyntaxError> {
        let mut sub = Parser { chars: text.chars().collect(), pos: 0, depth: self.depth + 1 };
        if sub.depth > MAX_DEPTH {
            return Err(SyntaxError("nested too deeply".into()));
        }
        let script = sub.list(&[])?;
        sub.skip_blanks_and_newlines();
        if sub.peek().is_some() {
            return Err(SyntaxError(format!("unexpected \"{}\"", sub.token_text())));
        }
        Ok(script)
    }
}

/// A shell variable name: a letter or `_`, then letters, digits and `_`.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A word quoted for a script, so `argv` runs as written.
pub fn quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(script: &Script) -> Vec<Vec<String>> {
        script
            .0
            .iter()
            .flat_map(|a| std::iter::once(&a.first).chain(a.rest.iter().map(|(_, p)| p)))
            .flat_map(|p| &p.commands)
            .filter_map(|c| match c {
                Command::Simple { words, .. } => Some(words.iter().map(|w| format!("{:?}", w.0)).collect()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lists_pipelines_and_connectors() {
        let s = parse("echo hello; exit 3").expect("parses");
        assert_eq!(s.0.len(), 2);
        let s = parse("a && b || c | d\nsleep 1 &\n").expect("parses");
        assert_eq!(s.0.len(), 2);
        assert_eq!(s.0[0].rest.len(), 2);
        assert_eq!(s.0[0].rest[1].1.commands.len(), 2);
        assert_eq!(words(&parse("# a comment\necho a # trailing").expect("parses")).len(), 1);
    }

    #[test]
    fn compound_commands() {
        let s = parse("touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600").expect("the liveness example");
        assert_eq!(s.0.len(), 4);
        let s = parse("until nslookup myservice; do echo waiting; sleep 2; done").expect("the init container example");
        assert!(matches!(s.0[0].first.commands[0], Command::Loop { until: true, .. }));
        let s = parse("for i in 1 2 3; do echo $i; done > /tmp/out").expect("for");
        assert!(
            matches!(&s.0[0].first.commands[0], Command::For { var, items: Some(items), redirects, .. } if var == "i" && items.len() == 3 && redirects.len() == 1)
        );
        let s = parse("if [ -f /x ]; then echo yes; elif true; then :; else echo no; fi").expect("if");
        assert!(matches!(&s.0[0].first.commands[0], Command::If { branches, otherwise: Some(_), .. } if branches.len() == 2));
        assert!(parse("{ echo a; echo b; } 2>&1 | wc -l").is_ok());
        assert!(parse("(cd /tmp && ls)").is_ok());
        assert!(parse("while true\ndo\n  echo x\ndone").is_ok());
    }

    #[test]
    fn words_quotes_and_expansions() {
        let s = parse(r#"echo 'a b' "c $HOME ${X:-d e}" \$ $((1 + 2)) $(hostname) `date` $?"#).expect("parses");
        let Command::Simple { words, .. } = &s.0[0].first.commands[0] else { panic!("simple") };
        assert_eq!(words.len(), 8);
        assert_eq!(words[1].0, [Part::Quoted("a b".into())]);
        assert!(matches!(&words[2].0[1], Part::Var { name, quoted: true, .. } if name == "HOME"));
        assert!(matches!(&words[2].0[3], Part::Var { name, default: Some(_), .. } if name == "X"));
        assert_eq!(words[3].0, [Part::Quoted("$".into())]);
        assert!(matches!(&words[4].0[0], Part::Arith { expr, .. } if expr == "1 + 2"));
        assert!(matches!(&words[5].0[0], Part::Command { .. }));
        assert!(matches!(&words[6].0[0], Part::Command { .. }));
        assert!(matches!(&words[7].0[0], Part::Var { name, .. } if name == "?"));
    }

    #[test]
    fn assignments_and_redirections() {
        let s = parse("A=1 B=\"x y\" env > /tmp/e 2>&1 < /dev/null").expect("parses");
        let Command::Simple { assigns, words, redirects } = &s.0[0].first.commands[0] else { panic!("simple") };
        assert_eq!(assigns.len(), 2);
        assert_eq!(words.len(), 1);
        let ops: Vec<(u32, RedirectOp)> = redirects.iter().map(|r| (r.fd, r.op)).collect();
        assert_eq!(ops, [(1, RedirectOp::Write), (2, RedirectOp::Dup), (0, RedirectOp::Read)]);
        assert!(parse("echo a >> /tmp/log").is_ok());
        assert!(parse("X=").is_ok());
    }

    #[test]
    fn errors_are_sh_like() {
        assert_eq!(parse("echo 'open").unwrap_err().to_string(), "syntax error: unterminated quoted string");
        assert!(parse("if true; then echo").unwrap_err().to_string().contains("expecting \"fi\""));
        assert!(parse("done").is_err());
        assert!(parse("echo )").is_err());
        assert!(parse("echo ${").is_err());
        assert!(parse(&"(".repeat(100)).unwrap_err().to_string().contains("nested too deeply"));
        assert!(parse(&"$(".repeat(100)).is_err());
        assert!(parse(&"x".repeat(MAX_SCRIPT + 1)).is_err());
    }

    /// Random bytes and random mixes of the grammar's own characters never panic, hang or
    /// recurse without end.
    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet: Vec<char> = "ab $(){}[];&|<>'\"\\`\n#=-:!0123456789ifthenelsdowhilforun".chars().collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let text: String = (0..len)
                .map(|i| {
                    let r = seed.rotate_left(i as u32 * 5);
                    alphabet[(r % alphabet.len() as u64) as usize]
                })
                .collect();
            let _ = parse(&text);
        }
    }
}

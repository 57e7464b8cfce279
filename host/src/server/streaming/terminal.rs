//! The terminal of `kubectl exec -it … -- sh`. kubectl puts the user's terminal in raw mode and
//! sends keys as they are typed, so the node does what a pseudo-terminal's line discipline
//! does in a real container (echo, erase, Ctrl-C, Ctrl-D, CR to NL on the way in, NL to CR NL
//! on the way out) and hands each finished line to the container's shell.

/// The longest line a session takes; more is refused with the terminal bell.
const MAX_LINE: usize = 64 * 1024;

/// What typing produced.
#[derive(Debug, PartialEq)]
pub enum Key {
    /// Enter: the line typed.
    Line(String),
    /// Ctrl-C: the line is dropped.
    Interrupt,
    /// Ctrl-D on an empty line: the shell's input ends.
    EndOfInput,
}

#[derive(Default)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Started,
    /// In a CSI sequence (ESC [ …), until its final byte.
    Csi,
    /// After ESC O: one more byte (keypad and cursor keys in application mode).
    Ss3,
}

/// A line being typed.
#[derive(Default)]
pub struct LineDiscipline {
    line: Vec<u8>,
    escape: Escape,
}

impl LineDiscipline {
    /// Takes typed bytes: appends what the terminal echoes to `echo` and returns the keys that
    /// complete something.
    pub fn feed(&mut self, bytes: &[u8], echo: &mut Vec<u8>) -> Vec<Key> {
        let mut keys = Vec::new();
        for &b in bytes {
            match (&self.escape, b) {
                // Cursor keys and the like: not line editing here.
                (Escape::Started, b'[') => self.escape = Escape::Csi,
                (Escape::Started, b'O') => self.escape = Escape::Ss3,
                (Escape::Started | Escape::Ss3, _) => self.escape = Escape::None,
                (Escape::Csi, 0x40..=0x7e) => self.escape = Escape::None,
                (Escape::Csi, _) => {}
                (Escape::None, 0x1b) => self.escape = Escape::Started,
                (Escape::None, b'\r' | b'\n') => {
                    echo.extend_from_slice(b"\r\n");
                    keys.push(Key::Line(String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned()));
                }
                (Escape::None, 0x7f | 0x08) => {
                    // One character back, however many bytes its UTF-8 takes.
                    while self.line.last().is_some_and(|c| c & 0xc0 == 0x80) {
                        self.line.pop();
                    }
                    if self.line.pop().is_some() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                (Escape::None, 0x03) => {
                    self.line.clear();
                    echo.extend_from_slice(b"^C\r\n");
                    keys.push(Key::Interrupt);
                }
                (Escape::None, 0x04) if self.line.is_empty() => keys.push(Key::EndOfInput),
                (Escape::None, b'\t' | 0x20..=0xff) if self.line.len() < MAX_LINE => {
                    self.line.push(b);
                    echo.push(b);
                }
                (Escape::None, b'\t' | 0x20..=0xff) => echo.push(0x07),
                (Escape::None, _) => {}
            }
        }
        keys
    }
}

/// The whole lines typed without a terminal, taken out of `pending` without their NL; an
/// unfinished line stays for the bytes that end it.
pub fn take_lines(pending: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
    }
    lines
}

/// Text as a terminal shows it: each NL a CR NL.
pub fn to_terminal(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(discipline: &mut LineDiscipline, bytes: &[u8]) -> (Vec<Key>, String) {
        let mut echo = Vec::new();
        let keys = discipline.feed(bytes, &mut echo);
        (keys, String::from_utf8_lossy(&echo).into_owned())
    }

    #[test]
    fn keys_are_echoed_and_enter_ends_a_line() {
        let mut d = LineDiscipline::default();
        assert_eq!(typed(&mut d, b"ls -l"), (vec![], "ls -l".to_string()));
        assert_eq!(typed(&mut d, b" /tmp\r"), (vec![Key::Line("ls -l /tmp".into())], " /tmp\r\n".to_string()));
    }

    #[test]
    fn backspace_erases_a_character_even_a_multibyte_one() {
        let mut d = LineDiscipline::default();
        let (_, echo) = typed(&mut d, "caf\u{e9}\x7f\x7fx\x7f\x7f\x7f\x7f\x7f".as_bytes());
        assert!(echo.ends_with("\x08 \x08"));
        assert_eq!(typed(&mut d, b"ok\r").0, vec![Key::Line("ok".into())], "erasing past the start does nothing");
    }

    #[test]
    fn ctrl_c_drops_the_line_ctrl_d_ends_input_only_on_an_empty_line() {
        let mut d = LineDiscipline::default();
        assert_eq!(typed(&mut d, b"sleep 9\x03"), (vec![Key::Interrupt], "sleep 9^C\r\n".to_string()));
        assert_eq!(typed(&mut d, b"x\x04").0, vec![]);
        assert_eq!(typed(&mut d, b"\x7f\x04").0, vec![Key::EndOfInput]);
    }

    #[test]
    fn cursor_keys_are_ignored() {
        let mut d = LineDiscipline::default();
        assert_eq!(typed(&mut d, b"\x1b[Aecho\x1b[1;5Dhi\x1bOB\r").0, vec![Key::Line("echohi".into())]);
    }

    #[test]
    fn output_gets_carriage_returns() {
        assert_eq!(to_terminal("a\nb\r\nc"), b"a\r\nb\r\nc".to_vec());
    }

    #[test]
    fn an_endless_line_is_bounded() {
        let mut d = LineDiscipline::default();
        let (_, echo) = typed(&mut d, &vec![b'a'; MAX_LINE + 10]);
        assert!(echo.ends_with("\x07"));
        let (keys, _) = typed(&mut d, b"\r");
        assert!(matches!(&keys[..], [Key::Line(l)] if l.len() == MAX_LINE));
    }
}

//! CSV as HAProxy writes it: records split at line breaks outside double
//! quotes, fields at commas, `""` an escaped quote (RFC 4180). A stats page
//! is nearly all unquoted rows, so those take a fast path: their fields are
//! found eight bytes at a time and kept as positions in the line, read only
//! when a column is used.

use std::borrow::Cow;

/// One row's fields, reused from row to row.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    line: &'a str,
    /// An unquoted row: where its first fields lie in `line`.
    bounds: Vec<(usize, usize)>,
    /// A row that quotes: its first fields, unquoted.
    unquoted: Vec<Cow<'a, str>>,
    quoted: bool,
    /// How many fields the row has (more than are kept).
    pub width: usize,
}

impl<'a> Fields<'a> {
    /// Splits `line` (a record of `records`, which says whether it quotes)
    /// and keeps its first `keep` fields.
    pub fn split(&mut self, line: &'a str, quoted: bool, keep: usize) {
        debug_assert!(quoted || !line.contains('"'), "{line:?} quotes");
        self.line = line;
        self.quoted = quoted;
        if quoted {
            split(line, &mut self.unquoted);
            self.width = self.unquoted.len();
            self.unquoted.truncate(keep);
        } else {
            self.width = split_plain(line, keep, &mut self.bounds);
        }
    }

    /// Field `i` as written (blanks kept), if kept.
    pub fn get(&self, i: usize) -> Option<&str> {
        if self.quoted {
            self.unquoted.get(i).map(|f| f.as_ref())
        } else {
            self.bounds.get(i).map(|&(a, b)| &self.line[a..b])
        }
    }

    /// Field `i` without its surrounding blanks, borrowed from the page
    /// unless it was quoted (unquoting made it a copy already).
    pub fn name(&self, i: usize) -> Option<Cow<'a, str>> {
        if self.quoted {
            return self
                .unquoted
                .get(i)
                .map(|f| Cow::Owned(f.trim().to_owned()));
        }
        let line = self.line;
        self.bounds
            .get(i)
            .map(|&(a, b)| Cow::Borrowed(line[a..b].trim()))
    }
}

/// Splits an unquoted line into where its first `keep` fields lie and
/// returns how many fields it has.
fn split_plain(line: &str, keep: usize, out: &mut Vec<(usize, usize)>) -> usize {
    out.clear();
    // Eight bytes at a time: a field is two or three bytes on average, too
    // short for a search per field to pay, and a row is mostly fields.
    let bytes = line.as_bytes();
    let (mut start, mut count, mut i) = (0, 1, 0);
    while i + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("eight bytes"));
        let mut commas = commas(word);
        if out.len() >= keep {
            // Past the fields read: only counted.
            count += commas.count_ones() as usize;
        } else {
            while commas != 0 {
                let at = i + (commas.trailing_zeros() / 8) as usize;
                if out.len() < keep {
                    out.push((start, at));
                }
                start = at + 1;
                count += 1;
                commas &= commas - 1;
            }
        }
        i += 8;
    }
    for (at, &b) in bytes.iter().enumerate().skip(i) {
        if b == b',' {
            if out.len() < keep {
                out.push((start, at));
            }
            start = at + 1;
            count += 1;
        }
    }
    if out.len() < keep {
        out.push((start, bytes.len()));
    }
    count
}

/// The high bit of each byte of `word` that is a comma (exact: no byte
/// other than a comma sets it).
fn commas(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ 0x2c2c_2c2c_2c2c_2c2c;
    !((x & LOW7).wrapping_add(LOW7) | x | LOW7)
}

/// Splits one CSV line; fields may be double-quoted (with `""` escapes).
pub fn split<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) {
    out.clear();
    if !line.contains('"') {
        out.extend(line.split(',').map(Cow::Borrowed));
        return;
    }
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(Cow::Owned(std::mem::take(&mut field))),
            (c, _) => field.push(c),
        }
    }
    out.push(Cow::Owned(field));
}

/// One record of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its first line's number (1-based).
    pub line_no: usize,
    pub text: &'a str,
    /// It holds a double quote.
    pub quoted: bool,
}

/// The records of a CSV page: a record ends at a line break outside double
/// quotes, so a quoted field holding line breaks (a check's description, an
/// agent's output) stays in its row.
pub struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

pub fn records(text: &str) -> Records<'_> {
    Records {
        text,
        pos: 0,
        line: 1,
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.text[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let line_no = self.line;
        // Most lines hold no quote: a line is a record, found by one search
        // for whichever of a line break or a quote comes first.
        let first = memchr::memchr2(b'\n', b'"', rest.as_bytes());
        if first.is_none_or(|i| rest.as_bytes()[i] == b'\n') {
            let line_end = first.unwrap_or(rest.len());
            self.line += 1;
            self.pos += (line_end + 1).min(rest.len());
            let text = rest[..line_end].trim_end_matches('\r');
            return Some(Record {
                line_no,
                text,
                quoted: false,
            });
        }
        let bytes = rest.as_bytes();
        let (mut quoted, mut end, mut next) = (false, bytes.len(), bytes.len());
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b'\n' => {
                    self.line += 1;
                    if !quoted {
                        end = i;
                        next = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        self.pos += next;
        let text = rest[..end].trim_end_matches('\r');
        Some(Record {
            line_no,
            text,
            quoted: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time split gives what a plain split by commas gives,
    /// for every cut of every width (fields empty, of several bytes, of
    /// multi-byte characters, across the eight-byte words).
    #[test]
    fn the_fast_split_is_the_plain_split() {
        let pieces = ["", "a", "web-01", "é", "12345678901", ",", "UP 1/3", "ß€"];
        let mut line = String::new();
        for n in 0..200usize {
            if n > 0 {
                line.push(',');
            }
            line.push_str(pieces[(n * 7 + n / 3) % pieces.len()]);
            let plain: Vec<&str> = line.split(',').collect();
            for keep in [0, 1, 3, 9, 64, plain.len(), plain.len() + 2] {
                let mut fields = Fields::default();
                fields.split(&line, false, keep);
                assert_eq!(fields.width, plain.len(), "{line:?}");
                let got: Vec<&str> = (0..plain.len()).map_while(|i| fields.get(i)).collect();
                assert_eq!(got, plain[..keep.min(plain.len())], "{line:?} keep {keep}");
            }
        }
    }

    #[test]
    fn quoted_fields_keep_their_commas() {
        let mut out = Vec::new();
        split(r#"a,"space, afterspace",b,"say ""hi""""#, &mut out);
        assert_eq!(out, ["a", "space, afterspace", "b", r#"say "hi""#]);
    }

    #[test]
    fn records_end_at_line_breaks_outside_quotes_and_say_whether_they_quote() {
        let page = "a,b\r\n\"x\ny\",2\nc,\"d\"\"e\"\n";
        let got: Vec<Record> = records(page).collect();
        let texts: Vec<(usize, &str, bool)> =
            got.iter().map(|r| (r.line_no, r.text, r.quoted)).collect();
        assert_eq!(
            texts,
            [
                (1, "a,b", false),
                (2, "\"x\ny\",2", true),
                (4, "c,\"d\"\"e\"", true)
            ]
        );
        let mut fields = Fields::default();
        fields.split(got[2].text, true, 5);
        assert_eq!(fields.width, 2);
        assert_eq!(fields.name(1).as_deref(), Some("d\"e"));
        assert_eq!(fields.get(2), None);
    }
}

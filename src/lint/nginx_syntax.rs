//! NGINX's config syntax: words, `;` and `{ }` blocks, with `include`
//! followed as NGINX follows it (a relative path is taken from the main
//! file's directory; a glob lists its matches in order).

use std::path::{Path, PathBuf};

use super::model::{Location, SourceFile};
use super::LintError;

/// One directive and, for a block, what it holds.
#[derive(Debug, Clone)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub at: Location,
    pub block: Option<Vec<Directive>>,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    End,
}

/// The files read so far, and the includes that could not be.
#[derive(Debug, Default)]
pub struct Files {
    pub files: Vec<SourceFile>,
    pub missing: Vec<(Location, String)>,
    base: PathBuf,
}

/// Reads the main file and every file it includes into one tree.
pub fn read(main: &Path) -> Result<(Vec<Directive>, Files), LintError> {
    let mut files = Files {
        base: main.parent().map(Path::to_path_buf).unwrap_or_default(),
        ..Files::default()
    };
    let tree = read_file(&mut files, main, 0)?;
    Ok((tree, files))
}

fn read_file(files: &mut Files, path: &Path, depth: usize) -> Result<Vec<Directive>, LintError> {
    let text = std::fs::read_to_string(path).map_err(|source| LintError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let index = files.files.len();
    files
        .files
        .push(SourceFile::new(path.display().to_string(), text));
    let tokens = tokenize(&files.files[index].text)
        .map_err(|(line, reason)| parse_error(&files.files[index].path, line, reason))?;
    let mut it = tokens.into_iter().peekable();
    let tree = block(files, index, &mut it, depth, false)?;
    Ok(tree)
}

fn parse_error(path: &str, line: u32, reason: impl Into<String>) -> LintError {
    LintError::Parse {
        at: format!("{path}:{line}"),
        reason: reason.into(),
    }
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<(u32, Token)>>;

/// Reads directives up to the `}` closing the block (or the end of file).
fn block(
    files: &mut Files,
    file: usize,
    it: &mut Tokens,
    depth: usize,
    nested: bool,
) -> Result<Vec<Directive>, LintError> {
    let mut out = Vec::new();
    let path = files.files[file].path.clone();
    let mut last_line = 1;
    while let Some((line, token)) = it.next() {
        last_line = line;
        let name = match token {
            Token::Close if nested => return Ok(out),
            Token::Close => return Err(parse_error(&path, line, "unexpected `}`")),
            Token::Open | Token::End => {
                return Err(parse_error(&path, line, "a directive name was expected"))
            }
            Token::Word(w) => w,
        };
        let at = Location { file, line };
        let mut args = Vec::new();
        loop {
            match it.next() {
                Some((_, Token::Word(w))) => args.push(w),
                Some((_, Token::End)) => {
                    if name == "include" {
                        out.extend(include(files, &at, &args, depth)?);
                    } else {
                        out.push(Directive {
                            name,
                            args,
                            at,
                            block: None,
                        });
                    }
                    break;
                }
                Some((_, Token::Open)) => {
                    let inner = block(files, file, it, depth, true)?;
                    out.push(Directive {
                        name,
                        args,
                        at,
                        block: Some(inner),
                    });
                    break;
                }
                Some((l, Token::Close)) => {
                    return Err(parse_error(
                        &path,
                        l,
                        format!("`{name}` is not terminated by `;`"),
                    ))
                }
                None => {
                    return Err(parse_error(
                        &path,
                        line,
                        format!("`{name}` is not terminated by `;`"),
                    ))
                }
            }
        }
    }
    if nested {
        return Err(parse_error(
            &path,
            last_line,
            "unexpected end of file, expecting `}`",
        ));
    }
    Ok(out)
}

/// `include PATTERN;`: the matching files' directives, in place.
fn include(
    files: &mut Files,
    at: &Location,
    args: &[String],
    depth: usize,
) -> Result<Vec<Directive>, LintError> {
    let path = files.files[at.file].path.clone();
    let [pattern] = args else {
        return Err(parse_error(
            &path,
            at.line,
            "`include` takes one file or pattern",
        ));
    };
    if depth > 16 {
        return Err(parse_error(
            &path,
            at.line,
            "includes nest more than 16 deep (a loop?)",
        ));
    }
    let full = files.base.join(pattern);
    let matches = crate::glob::glob(&full);
    if matches.is_empty() && !pattern.contains('*') {
        files.missing.push((at.clone(), pattern.clone()));
    }
    let mut out = Vec::new();
    for m in matches {
        out.extend(read_file(files, &m, depth + 1)?);
    }
    Ok(out)
}

/// Words, `{`, `}` and `;`, each with its line. Quotes group, a backslash
/// escapes, `#` at the start of a word comments out the rest of the line,
/// and `${var}` stays one word. A `*_by_lua_block` body is skipped whole.
fn tokenize(text: &str) -> Result<Vec<(u32, Token)>, (u32, &'static str)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1u32;
    let mut word = String::new();
    let mut started: Option<u32> = None;
    let flush = |word: &mut String, started: &mut Option<u32>, out: &mut Vec<(u32, Token)>| {
        if let Some(l) = started.take() {
            out.push((l, Token::Word(std::mem::take(word))));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                flush(&mut word, &mut started, &mut out);
                line += 1;
            }
            c if c.is_whitespace() => flush(&mut word, &mut started, &mut out),
            '#' if started.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' | '\'' if started.is_none() => {
                started = Some(line);
                loop {
                    match chars.next() {
                        None => return Err((line, "unterminated quote")),
                        Some(q) if q == c => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            word.push(ch);
                        }
                    }
                }
            }
            '\\' => {
                word.extend(chars.next());
                started.get_or_insert(line);
            }
            '{' if word.ends_with('$') => {
                word.push('{');
                for ch in chars.by_ref() {
                    word.push(ch);
                    if ch == '}' {
                        break;
                    }
                }
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut started, &mut out);
                let token = match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    _ => Token::End,
                };
                let lua = c == '{' && is_lua_block(&out);
                out.push((line, token));
                if lua {
                    line = skip_balanced(&mut chars, line)?;
                    out.push((line, Token::Close));
                }
            }
            c => {
                word.push(c);
                started.get_or_insert(line);
            }
        }
    }
    flush(&mut word, &mut started, &mut out);
    Ok(out)
}

fn is_lua_block(tokens: &[(u32, Token)]) -> bool {
    tokens
        .iter()
        .rev()
        .take(3)
        .any(|(_, t)| matches!(t, Token::Word(w) if w.ends_with("_by_lua_block")))
}

/// Skips a Lua block's body up to its closing brace, past braces in Lua
/// strings and comments; returns the line there.
fn skip_balanced(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    mut line: u32,
) -> Result<u32, (u32, &'static str)> {
    let mut depth = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '"' | '\'' => {
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            chars.next();
                        }
                        '\n' => line += 1,
                        s if s == c => break,
                        _ => {}
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for s in chars.by_ref() {
                    if s == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(line);
                }
            }
            _ => {}
        }
    }
    Err((line, "unexpected end of file in a Lua block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_quotes_variables_and_lines() {
        let t = tokenize("a \"b c\" ${x}y; # note\nserver {\n  d 'e;f';\n}\n").unwrap();
        let words: Vec<_> = t
            .iter()
            .map(|(l, t)| match t {
                Token::Word(w) => format!("{l}:{w}"),
                Token::Open => format!("{l}:{{"),
                Token::Close => format!("{l}:}}"),
                Token::End => format!("{l}:;"),
            })
            .collect();
        assert_eq!(
            words,
            ["1:a", "1:b c", "1:${x}y", "1:;", "2:server", "2:{", "3:d", "3:e;f", "3:;", "4:}"]
        );
    }

    #[test]
    fn lua_blocks_are_skipped_past_braces_in_strings_and_comments() {
        let t = tokenize("a_by_lua_block {\n  ngx.say(\"}\") -- }\n  x = '{'\n}\nnext;\n").unwrap();
        let last: Vec<_> = t
            .iter()
            .rev()
            .take(2)
            .map(|(l, t)| (*l, matches!(t, Token::Word(w) if w == "next")))
            .collect();
        assert_eq!(last, [(5, false), (5, true)]);
    }

    #[test]
    fn an_unclosed_block_names_its_file_and_line() {
        let dir = std::env::temp_dir().join(format!("lbwatch-nginx-syntax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let main = dir.join("nginx.conf");
        std::fs::write(&main, "http {\n  server {\n    listen 80;\n").unwrap();
        let e = read(&main).unwrap_err().to_string();
        assert!(
            e.ends_with("nginx.conf:3: unexpected end of file, expecting `}`"),
            "{e}"
        );
        std::fs::write(&main, "http {\n  listen 80\n}\n").unwrap();
        let e = read(&main).unwrap_err().to_string();
        assert!(
            e.ends_with("nginx.conf:3: `listen` is not terminated by `;`"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

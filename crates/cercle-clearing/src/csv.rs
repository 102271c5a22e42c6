//! Obligations from CSV, and the cleared amounts back to CSV: the only I/O of the crate.
//!
//! The input has three columns, `debtor,creditor,amount`: two firm names and an integer amount
//! in minor units, greater than zero. The first line may be that header. Firm names are any
//! non-empty text, trimmed of surrounding whitespace; a name containing a comma or a double
//! quote is written in double quotes, with `""` for a quote inside (RFC 4180). Blank lines are
//! skipped, a UTF-8 byte order mark and CRLF line ends are accepted. Firms are numbered in order
//! of first appearance, so the same file always gives the same problem.
//!
//! Everything is bounded (file size, line length, obligations, firms), and every error names
//! the line and the problem: "line 17: amount 'abc' is not an integer in minor units".

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use crate::setoff::{FIRMS_MAX, OBLIGATIONS_MAX};

/// Largest file read: a gibibyte, room for ten million obligations with long names.
pub const FILE_BYTES_MAX: u64 = 1 << 30;
/// Longest line, in bytes.
pub const LINE_BYTES_MAX: usize = 4096;
/// How much of an offending field an error message quotes, in characters.
const QUOTE_CHARS_MAX: usize = 40;

/// Obligations read from a file: firm names, and (debtor, creditor, amount_minor) with firms as
/// indices into `firms`, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invoices {
    pub firms: Vec<String>,
    pub obligations: Vec<(u32, u32, i64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}")]
    Io { path: String, source: std::io::Error },
    #[error("the file has {bytes} bytes, more than the {FILE_BYTES_MAX} allowed")]
    FileTooLarge { bytes: u64 },
    #[error("line {line}: {problem}")]
    Line { line: u64, problem: LineProblem },
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("the line is not valid UTF-8")]
    NotUtf8,
    #[error("the line has {bytes} bytes, more than the {LINE_BYTES_MAX} allowed")]
    TooLong { bytes: u64 },
    #[error("expected 3 columns (debtor,creditor,amount), found {count}")]
    Columns { count: u64 },
    #[error("a quoted field has no closing quote")]
    UnterminatedQuote,
    #[error("text after the closing quote of a field")]
    TextAfterQuote,
    #[error("the {column} is empty")]
    EmptyFirm { column: &'static str },
    #[error("amount '{text}' is not an integer in minor units (e.g. 1250 for 12.50)")]
    AmountNotInteger { text: String },
    #[error("amount '{text}' is too large, at most {}", i64::MAX)]
    AmountTooLarge { text: String },
    #[error("amount {amount} is not positive")]
    AmountNotPositive { amount: i64 },
    #[error("firm '{firm}' owes itself")]
    SelfObligation { firm: String },
    #[error("more than {OBLIGATIONS_MAX} obligations")]
    TooManyObligations,
    #[error("more than {FIRMS_MAX} firms")]
    TooManyFirms,
}

/// Reads and parses a file, refusing one larger than [`FILE_BYTES_MAX`] before reading it.
pub fn read(path: &Path) -> Result<Invoices, CsvError> {
    let io = |source| CsvError::Io { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    if bytes > FILE_BYTES_MAX {
        return Err(CsvError::FileTooLarge { bytes });
    }
    let mut text = Vec::with_capacity(bytes as usize);
    // The file may grow while read: take one byte more than allowed to notice.
    file.take(FILE_BYTES_MAX + 1).read_to_end(&mut text).map_err(io)?;
    if text.len() as u64 > FILE_BYTES_MAX {
        return Err(CsvError::FileTooLarge { bytes: text.len() as u64 });
    }
    parse(&text)
}

/// Parses the obligations in `text`.
pub fn parse(text: &[u8]) -> Result<Invoices, CsvError> {
    parse_within(text, OBLIGATIONS_MAX, FIRMS_MAX)
}

/// [`parse`] with the bounds on obligations and firms as arguments, so tests can reach them.
fn parse_within(text: &[u8], obligations_max: u32, firms_max: u32) -> Result<Invoices, CsvError> {
    if text.len() as u64 > FILE_BYTES_MAX {
        return Err(CsvError::FileTooLarge { bytes: text.len() as u64 });
    }
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let mut invoices = Invoices::default();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut seen_content = false;
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let at = |problem| CsvError::Line { line, problem };
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > LINE_BYTES_MAX {
            return Err(at(LineProblem::TooLong { bytes: raw.len() as u64 }));
        }
        let raw = std::str::from_utf8(raw).map_err(|_| at(LineProblem::NotUtf8))?;
        if raw.trim().is_empty() {
            continue;
        }
        let fields = split(raw).map_err(at)?;
        let first = !seen_content;
        seen_content = true;
        if first && is_header(&fields) {
            continue;
        }
        let [debtor, creditor, amount] = fields.as_slice() else {
            return Err(at(LineProblem::Columns { count: fields.len() as u64 }));
        };
        if debtor.is_empty() {
            return Err(at(LineProblem::EmptyFirm { column: "debtor" }));
        }
        if creditor.is_empty() {
            return Err(at(LineProblem::EmptyFirm { column: "creditor" }));
        }
        if debtor == creditor {
            return Err(at(LineProblem::SelfObligation { firm: excerpt(debtor) }));
        }
        let amount = parse_amount(amount).map_err(at)?;
        if invoices.obligations.len() >= obligations_max as usize {
            return Err(at(LineProblem::TooManyObligations));
        }
        let mut id = |name: &str| -> Result<u32, CsvError> {
            if let Some(&id) = ids.get(name) {
                return Ok(id);
            }
            if invoices.firms.len() >= firms_max as usize {
                return Err(at(LineProblem::TooManyFirms));
            }
            let id = invoices.firms.len() as u32;
            invoices.firms.push(name.to_string());
            ids.insert(name.to_string(), id);
            Ok(id)
        };
        let (d, c) = (id(debtor)?, id(creditor)?);
        invoices.obligations.push((d, c, amount));
    }
    Ok(invoices)
}

fn is_header(fields: &[String]) -> bool {
    let names = ["debtor", "creditor", "amount"];
    fields.len() == 3 && fields.iter().zip(names).all(|(f, n)| f.eq_ignore_ascii_case(n))
}

/// The fields of one line, trimmed, with RFC 4180 quotes removed.
fn split(line: &str) -> Result<Vec<String>, LineProblem> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err(LineProblem::UnterminatedQuote),
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_some_and(|&c| c != ',') {
                return Err(LineProblem::TextAfterQuote);
            }
        } else {
            while let Some(c) = chars.next_if(|&c| c != ',') {
                field.push(c);
            }
        }
        fields.push(field.trim().to_string());
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

fn parse_amount(text: &str) -> Result<i64, LineProblem> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineProblem::AmountNotInteger { text: excerpt(text) });
    }
    let amount: i64 = text.parse().map_err(|_| LineProblem::AmountTooLarge { text: excerpt(text) })?;
    if amount <= 0 {
        return Err(LineProblem::AmountNotPositive { amount });
    }
    Ok(amount)
}

/// The start of a field, for an error message.
fn excerpt(text: &str) -> String {
    if text.chars().count() <= QUOTE_CHARS_MAX {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(QUOTE_CHARS_MAX).collect();
        short.push('…');
        short
    }
}

/// Writes `debtor,creditor,amount,cleared`, one line per obligation in input order.
pub fn write_cleared(out: &mut impl Write, invoices: &Invoices, cleared: &[i64]) -> std::io::Result<()> {
    writeln!(out, "debtor,creditor,amount,cleared")?;
    for (&(d, c, amount), &x) in invoices.obligations.iter().zip(cleared) {
        let name = |f: u32| invoices.firms.get(f as usize).map_or("", String::as_str);
        writeln!(out, "{},{},{amount},{x}", field(name(d)), field(name(c)))?;
    }
    Ok(())
}

/// A name as a CSV field: quoted when it holds a comma, a quote or a line break.
fn field(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", name.replace('"', "\"\"")).into()
    } else {
        name.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed<'a> = (&'a [&'a str], &'a [(u32, u32, i64)]);

    fn check(text: &str, expected: Result<Parsed<'_>, &str>) {
        let got = parse(text.as_bytes());
        match expected {
            Ok((firms, obligations)) => {
                let got = got.unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(got.firms, firms, "{text:?}");
                assert_eq!(got.obligations, obligations, "{text:?}");
            }
            Err(message) => assert_eq!(got.unwrap_err().to_string(), message, "{text:?}"),
        }
    }

    #[test]
    fn parses_obligations() {
        check("", Ok((&[], &[])));
        check("\n  \n", Ok((&[], &[])));
        check("debtor,creditor,amount\n", Ok((&[], &[])));
        check("Debtor, Creditor , AMOUNT\r\na,b,100\r\n", Ok((&["a", "b"], &[(0, 1, 100)])));
        check("a,b,100\nb,c,70\nc,a,50", Ok((&["a", "b", "c"], &[(0, 1, 100), (1, 2, 70), (2, 0, 50)])));
        check("\u{feff}a,b,1\n\n a b , c ,+2\n", Ok((&["a", "b", "a b", "c"], &[(0, 1, 1), (2, 3, 2)])));
        check("\"Müller, AG\",\"Say \"\"hi\"\"\",5\n", Ok((&["Müller, AG", "Say \"hi\""], &[(0, 1, 5)])));
        check(&format!("a,b,{}", i64::MAX), Ok((&["a", "b"], &[(0, 1, i64::MAX)])));
    }

    #[test]
    fn names_the_line_and_the_problem() {
        check(
            "a,b,1\na,b,abc\n",
            Err("line 2: amount 'abc' is not an integer in minor units (e.g. 1250 for 12.50)"),
        );
        check(
            "a,b,12.50",
            Err("line 1: amount '12.50' is not an integer in minor units (e.g. 1250 for 12.50)"),
        );
        check("a,b,", Err("line 1: amount '' is not an integer in minor units (e.g. 1250 for 12.50)"));
        check("a,b,-5", Err("line 1: amount -5 is not positive"));
        check("a,b,0", Err("line 1: amount 0 is not positive"));
        check(
            "a,b,9223372036854775808",
            Err("line 1: amount '9223372036854775808' is too large, at most 9223372036854775807"),
        );
        check("\n\na,b\n", Err("line 3: expected 3 columns (debtor,creditor,amount), found 2"));
        check("a,b,1,2", Err("line 1: expected 3 columns (debtor,creditor,amount), found 4"));
        check(
            "debtor,creditor,amount\ndebtor,creditor,amount",
            Err("line 2: amount 'amount' is not an integer in minor units (e.g. 1250 for 12.50)"),
        );
        check(" ,b,1", Err("line 1: the debtor is empty"));
        check("a,\"\",1", Err("line 1: the creditor is empty"));
        check("a, a ,1", Err("line 1: firm 'a' owes itself"));
        check("\"a,b,1", Err("line 1: a quoted field has no closing quote"));
        check("\"a\"x,b,1", Err("line 1: text after the closing quote of a field"));
        assert_eq!(parse(b"a,b,1\n\xff,b,1").unwrap_err().to_string(), "line 2: the line is not valid UTF-8");
        assert_eq!(
            parse(&[b"a,b,1\n".as_slice(), &[b'x'; LINE_BYTES_MAX + 1]].concat()).unwrap_err().to_string(),
            format!(
                "line 2: the line has {} bytes, more than the {LINE_BYTES_MAX} allowed",
                LINE_BYTES_MAX + 1
            )
        );
        let long = "x".repeat(100);
        check(
            &format!("a,b,{long}"),
            Err(&format!(
                "line 1: amount '{}…' is not an integer in minor units (e.g. 1250 for 12.50)",
                "x".repeat(40)
            )),
        );
    }

    #[test]
    fn bounds_on_obligations_and_firms() {
        let text = b"a,b,1\nb,c,1\nc,a,1\n";
        assert_eq!(parse_within(text, 3, 3).unwrap().obligations.len(), 3);
        assert_eq!(
            parse_within(text, 2, 3).unwrap_err().to_string(),
            "line 3: more than 10000000 obligations"
        );
        assert_eq!(parse_within(text, 3, 2).unwrap_err().to_string(), "line 2: more than 10000000 firms");
    }

    #[test]
    fn writes_what_it_reads() {
        let text = "debtor,creditor,amount,cleared\n\"Müller, AG\",b,100,50\nb,\"Say \"\"hi\"\"\",70,0\n";
        let invoices = parse(b"\"M\xc3\xbcller, AG\",b,100\nb,\"Say \"\"hi\"\"\",70\n").unwrap();
        let mut out = Vec::new();
        write_cleared(&mut out, &invoices, &[50, 0]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), text);
    }

    #[test]
    fn reads_files_within_the_bound() {
        let dir = std::env::temp_dir().join(format!("cercle-clearing-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.csv");
        std::fs::write(&path, "a,b,3\nb,a,2\n").unwrap();
        assert_eq!(read(&path).unwrap().obligations, vec![(0, 1, 3), (1, 0, 2)]);
        let missing = read(&dir.join("missing.csv")).unwrap_err();
        assert!(matches!(&missing, CsvError::Io { path, .. } if path.ends_with("missing.csv")), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

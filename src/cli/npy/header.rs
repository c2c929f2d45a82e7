//! The .npy header: the Python literal of one dictionary, parsed strictly.
//!
//! numpy writes `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with
//! spaces and a newline. Accepted: exactly those three keys, in any order, each once; string
//! values in single or double quotes without escapes; `True` / `False`; a tuple of
//! non-negative decimal integers (`()`, `(5,)`, `(3, 4)`; a trailing comma allowed). Anything
//! else is an error naming what was found.

/// What a header says.
#[derive(Debug, PartialEq)]
pub struct Header {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "header: expected '{}' at byte {}, found '{}'",
                c as char,
                self.i,
                x.escape_ascii()
            )),
            None => Err(format!("header: expected '{}', found its end", c as char)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let q = self
            .peek()
            .ok_or("header: expected a string, found its end")?;
        if q != b'\'' && q != b'"' {
            return Err(format!(
                "header: expected a quoted string at byte {}",
                self.i
            ));
        }
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q || c == b'\\')
            .ok_or("header: unterminated string")?;
        if self.s[start + len] == b'\\' {
            return Err("header: escapes in strings are not supported".into());
        }
        self.i = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec())
            .map_err(|_| "header: a string is not valid text".to_string())
    }

    fn word(&mut self) -> &[u8] {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn boolean(&mut self) -> Result<bool, String> {
        match self.word() {
            b"True" => Ok(true),
            b"False" => Ok(false),
            w => Err(format!(
                "header: fortran_order must be True or False, found {:?}",
                String::from_utf8_lossy(w)
            )),
        }
    }

    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.peek() == Some(b')') {
                self.i += 1;
                return Ok(dims);
            }
            let w = self.word();
            let text = String::from_utf8_lossy(w).into_owned();
            let d: usize = text
                .parse()
                .map_err(|_| format!("header: shape entry {text:?} is not a dimension"))?;
            dims.push(d);
            if dims.len() > 32 {
                return Err("header: shape has more than 32 dimensions".into());
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {}
                _ => return Err("header: shape is not a tuple of integers".into()),
            }
        }
    }
}

/// Parses a header's text.
pub fn parse(text: &str) -> Result<Header, String> {
    let mut c = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    c.expect(b'{')?;
    loop {
        if c.peek() == Some(b'}') {
            c.i += 1;
            break;
        }
        let key = c.string()?;
        c.expect(b':')?;
        let dup = match key.as_str() {
            "descr" => descr.replace(c.string()?).is_some(),
            "fortran_order" => fortran.replace(c.boolean()?).is_some(),
            "shape" => shape.replace(c.shape()?).is_some(),
            other => return Err(format!("header: unexpected key {other:?}")),
        };
        if dup {
            return Err(format!("header: key {key:?} appears twice"));
        }
        match c.peek() {
            Some(b',') => c.i += 1,
            Some(b'}') => {}
            _ => return Err("header: expected ',' or '}' after a value".into()),
        }
    }
    if c.peek().is_some() {
        return Err("header: text after the dictionary".into());
    }
    Ok(Header {
        descr: descr.ok_or("header: no 'descr'")?,
        fortran_order: fortran.ok_or("header: no 'fortran_order'")?,
        shape: shape.ok_or("header: no 'shape'")?,
    })
}

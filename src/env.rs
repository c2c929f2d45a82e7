//! Settings read from environment variables, all parsed by [`choice`]: a variable is unset
//! (the default), or one of its accepted values exactly, or an error naming it, its value and
//! what it accepts. Never a silent default for a mistyped value: CI selects modes this way,
//! and a typo must not quietly test another mode.

use crate::error::{Error, Result};

/// The value of `name` among `choices` (`(spelling, value)` pairs), `default` when unset.
pub(crate) fn choice<T: Copy>(name: &'static str, choices: &[(&str, T)], default: T) -> Result<T> {
    let expected = || {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        format!("one of {} (or unset)", names.join(", "))
    };
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::Environment {
            name,
            value: format!("{v:?}"),
            expected: expected(),
        }),
        Ok(v) => choices
            .iter()
            .find(|(n, _)| *n == v)
            .map(|&(_, t)| t)
            .ok_or_else(|| Error::Environment {
                name,
                value: v,
                expected: expected(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_known_and_unknown_values() {
        // A variable no one sets: the default.
        let c = [("a", 1), ("b", 2)];
        assert_eq!(choice("SMOOTHMAX_TEST_UNSET_VARIABLE", &c, 7), Ok(7));
        // PATH is set and is neither "a" nor "b": an error naming it and the choices.
        let e = choice("PATH", &c, 7).unwrap_err().to_string();
        assert!(
            e.starts_with("PATH=") && e.contains("one of a, b (or unset)"),
            "{e}"
        );
    }
}

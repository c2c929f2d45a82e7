//! Why a command failed, and the exit status that follows from it.

/// Why a command failed, which decides its exit status.
pub enum Failure {
    /// A bad command line: exit 2.
    Usage(String),
    /// Bad input (a file, a value out of range, a GPU asked for and absent): exit 2, nothing
    /// written.
    Input(String),
    /// A failure at run time (device lost or out of memory, an output that cannot be
    /// written): exit 1.
    Runtime(String),
}

impl From<String> for Failure {
    /// The npy reader's messages: input errors.
    fn from(m: String) -> Self {
        Failure::Input(m)
    }
}

impl From<smoothmax::Error> for Failure {
    fn from(e: smoothmax::Error) -> Self {
        use smoothmax::Error as E;
        match e {
            E::BadTemperature(_)
            | E::ShapeTooLarge { .. }
            | E::NoAdapter { .. }
            | E::Environment { .. }
            | E::Unavailable(_)
            | E::InvalidInput(_) => Failure::Input(e.to_string()),
            _ => Failure::Runtime(e.to_string()),
        }
    }
}

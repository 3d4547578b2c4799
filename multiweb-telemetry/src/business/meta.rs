//! What every declared metric knows about itself.

/// The metric type, as on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `summary`.
    Summary,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
        }
    }
}

/// A declared metric's name, HELP text, type, label name and place of
/// declaration. Written by `#[business_metric]`.
#[derive(Debug)]
pub struct Meta {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) label: Option<&'static str>,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
}

impl Meta {
    /// Used by `#[business_metric]`; not meant to be called by hand.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        label: Option<&'static str>,
        file: &'static str,
        line: u32,
    ) -> Self {
        Self {
            name,
            help,
            kind,
            label,
            file,
            line,
        }
    }

    /// The exported name, e.g. `multiweb_products_created_total`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where it was declared, as `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// Appends the `# HELP` and `# TYPE` lines.
    pub(crate) fn header(&self, out: &mut String) {
        use std::fmt::Write as _;
        let help = self.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n",
            name = self.name,
            kind = self.kind.as_str()
        );
    }
}

/// A label whose values are a closed set: derive it on a field-less enum
/// with `#[derive(LabelValue)]`; variants become snake_case values
/// (`BankTransfer` is `bank_transfer`).
pub trait LabelValue {
    /// Every value, in declaration order.
    const VALUES: &'static [&'static str];

    /// This value's position in [`VALUES`](Self::VALUES).
    fn index(&self) -> usize;
}

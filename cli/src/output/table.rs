//! Tables as kubectl lays them out: columns aligned, separated by three spaces. The columns of each
//! kind are the api crate's ([`skiff_api::printers`]), shared with the REST API's Table answers.

/// Prints rows aligned in columns separated by three spaces, as kubectl does.
pub fn render<H: AsRef<str>>(headers: &[H], rows: &[Vec<String>], with_headers: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.as_ref().chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                let width = widths.get(i).copied().unwrap_or_default();
                out.push_str(&" ".repeat(width.saturating_sub(c.chars().count()) + 3));
            }
        }
        out.push('\n');
    };
    if with_headers {
        line(headers.iter().map(AsRef::as_ref).collect());
    }
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let out = render(
            &["NAME", "AGE"],
            &[
                vec!["a-long-name".into(), "5s".into()],
                vec!["b".into(), "1m".into()],
            ],
            true,
        );
        assert_eq!(
            out,
            "NAME          AGE\na-long-name   5s\nb             1m\n"
        );
    }
}

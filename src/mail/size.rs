//! Sizes as people write and read them: `64M`, `1G`, `512K` on the
//! command line, `64 MiB` in messages. Binary multiples, as for every
//! size in mail software (Postfix's and Dovecot's limits count in 1024s).

/// The multiples, largest first.
const UNITS: [(u64, &str, char); 4] = [
    (1 << 40, "TiB", 'T'),
    (1 << 30, "GiB", 'G'),
    (1 << 20, "MiB", 'M'),
    (1 << 10, "KiB", 'K'),
];

/// A size for a person: `64 MiB` when it is a whole number of a unit,
/// else `1000 octets`.
pub fn octets(n: u64) -> String {
    for (unit, name, _) in UNITS {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{} {name}", n / unit);
        }
    }
    format!("{n} octets")
}

/// Reads a size: a number of octets, or one with a suffix `K`, `M`, `G`
/// or `T` (also `KiB`, `MB` and the like, in any case; all binary).
pub fn parse_octets(text: &str) -> Result<u64, String> {
    let invalid = || format!("{text:?} is not a size: write octets, or e.g. 512K, 64M, 1G");
    let trimmed = text.trim();
    let digits = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = trimmed[digits.len()..].to_ascii_uppercase();
    let number: u64 = digits.trim().parse().map_err(|_| invalid())?;
    let multiple = match suffix.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        letter => {
            let found = UNITS
                .iter()
                .find(|(_, _, short)| letter.len() == 1 && letter.starts_with(*short));
            found.map(|(unit, _, _)| *unit).ok_or_else(invalid)?
        }
    };
    number
        .checked_mul(multiple)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_and_without_suffixes() {
        assert_eq!(parse_octets("1000"), Ok(1000));
        assert_eq!(parse_octets("512K"), Ok(512 * 1024));
        assert_eq!(parse_octets("64M"), Ok(64 << 20));
        assert_eq!(parse_octets("64MiB"), Ok(64 << 20));
        assert_eq!(parse_octets("1g"), Ok(1 << 30));
        assert_eq!(parse_octets("2 GB"), Ok(2 << 30));
        for bad in ["", "M", "12X", "1.5G", "-1", "64MM"] {
            let error = parse_octets(bad).unwrap_err();
            assert!(error.contains("e.g. 512K, 64M, 1G"), "{bad:?}: {error}");
        }
        assert!(parse_octets("99999999999T")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes_print_in_the_largest_whole_unit() {
        assert_eq!(octets(64 << 20), "64 MiB");
        assert_eq!(octets(1 << 30), "1 GiB");
        assert_eq!(octets(1536), "1536 octets");
        assert_eq!(octets(3 << 10), "3 KiB");
        assert_eq!(octets(10), "10 octets");
        assert_eq!(octets(0), "0 octets");
    }
}

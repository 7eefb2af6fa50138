//! Units of link impairment, written the way `tc` users write them: `20ms`, `0.5%`, `10mbit`.

/// A duration such as `20ms`, `1.5s` or `250us`, in microseconds.
pub fn parse_duration_us(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        _ => {
            return Err(format!(
                "`{text}`: expected a duration such as 20ms, 1.5s or 250us"
            ))
        }
    };
    Ok((number * scale).round() as u64)
}

/// A percentage such as `0.5%`, between 0 and 100.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let (number, unit) = split_number(text)?;
    if unit != "%" || number > 100.0 {
        return Err(format!("`{text}`: expected a percentage from 0% to 100%"));
    }
    Ok(number)
}

/// A rate such as `100mbit`, `64kbit` or `1gbit`, in bits per second.
pub fn parse_rate_bps(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => {
            return Err(format!(
                "`{text}`: expected a rate such as 64kbit, 10mbit or 1gbit"
            ))
        }
    };
    let bps = (number * scale).round() as u64;
    if bps < 8 {
        return Err(format!("`{text}`: a rate must be at least 8bit"));
    }
    Ok(bps)
}

fn split_number(text: &str) -> Result<(f64, &str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number followed by a unit"))?;
    if !number.is_finite() || number < 0.0 {
        return Err(format!("`{text}`: must be a non-negative number"));
    }
    Ok((number, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("20ms"), Ok(20_000));
        assert_eq!(parse_duration_us("1.5s"), Ok(1_500_000));
        assert_eq!(parse_duration_us("250us"), Ok(250));
        assert!(parse_duration_us("20").is_err());
        assert!(parse_duration_us("fast").is_err());
    }

    #[test]
    fn percents_and_rates() {
        assert_eq!(parse_percent("0.5%"), Ok(0.5));
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("5").is_err());
        assert_eq!(parse_rate_bps("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate_bps("64kbit"), Ok(64_000));
        assert!(parse_rate_bps("10mb").is_err());
    }
}

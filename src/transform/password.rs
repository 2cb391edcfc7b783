//! Password policy and generation, from a `password` field's `options` JSON.

use rand::CryptoRng;
use rand::RngExt;
use rand::seq::SliceRandom;

use crate::Secret;
use crate::job::wire::PasswordOptions;

/// How a `password` field gets its value (`passwordType`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordRule {
    /// `passwordType` 0 (or no options): the field's transform (usually `Static`) gives one
    /// password for every row.
    Static,
    /// `passwordType` 1: a unique password per row, generated under this policy.
    Generate(PasswordPolicy),
}

/// What a generated password must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// 6 to 99 characters.
    pub length: usize,
    /// `A`–`Z` at least once.
    pub uppercase: bool,
    /// `a`–`z` at least once.
    pub lowercase: bool,
    /// `0`–`9` at least once.
    pub digits: bool,
    /// At least one of these symbols (empty: no symbols).
    pub special_symbols: Vec<char>,
    /// No special symbol appears more than once (the product's "exclude similar symbols").
    pub exclude_similar_symbols: bool,
    /// Deliver the password to the user's manager (passed to the host's password hook).
    pub manager_notification: bool,
}

/// Why a password `options` document was refused.
pub type PolicyError = String;

impl PasswordRule {
    /// Reads the `options` JSON of a `password` field.
    pub fn from_options(options: Option<&str>) -> Result<PasswordRule, PolicyError> {
        let Some(text) = options.filter(|t| !t.trim().is_empty()) else {
            return Ok(PasswordRule::Static);
        };
        let o: PasswordOptions =
            serde_json::from_str(text).map_err(|e| format!("options is not valid JSON: {e}"))?;
        match o.password_type.unwrap_or(0) {
            0 => Ok(PasswordRule::Static),
            1 => PasswordPolicy::from_options(&o).map(PasswordRule::Generate),
            n => Err(format!(
                "passwordType {n} is not known (0 = static, 1 = generated)"
            )),
        }
    }

    /// True when this rule generates passwords, whose delivery needs a hook.
    pub fn manager_notification(&self) -> bool {
        matches!(self, PasswordRule::Generate(p) if p.manager_notification)
    }
}

impl PasswordPolicy {
    fn from_options(o: &PasswordOptions) -> Result<PasswordPolicy, PolicyError> {
        let length = o.password_length.unwrap_or(8);
        if !(6..=99).contains(&length) {
            return Err(format!("passwordLength {length} is outside 6 to 99"));
        }
        let mut special_symbols: Vec<char> = Vec::new();
        if o.include_special_symbols.unwrap_or(false) {
            for c in o.special_symbols.as_deref().unwrap_or("").chars() {
                if c.is_alphanumeric() || c.is_whitespace() || c.is_control() {
                    return Err(format!("specialSymbols may hold only symbols, not {c:?}"));
                }
                if !special_symbols.contains(&c) {
                    special_symbols.push(c);
                }
            }
            if special_symbols.is_empty() {
                return Err("includeSpecialSymbols is on but specialSymbols is empty".into());
            }
        }
        let policy = PasswordPolicy {
            length: length as usize,
            uppercase: o.include_uppercase_alphabets.unwrap_or(false),
            lowercase: o.include_lowercase_alphabets.unwrap_or(false),
            digits: o.include_digits.unwrap_or(false),
            special_symbols,
            exclude_similar_symbols: o.exclude_similar_symbols.unwrap_or(false),
            manager_notification: o.manager_notification.unwrap_or(false),
        };
        let classes = policy.classes();
        if classes.is_empty() {
            return Err("no character class is enabled".into());
        }
        if classes.len() > policy.length {
            return Err(format!(
                "passwordLength {} is too short for {} required character classes",
                policy.length,
                classes.len()
            ));
        }
        let alphanumeric = policy.uppercase || policy.lowercase || policy.digits;
        if policy.exclude_similar_symbols
            && !alphanumeric
            && policy.special_symbols.len() < policy.length
        {
            return Err(format!(
                "only {} distinct special symbols for a {}-character password with \
                 excludeSimilarSymbols",
                policy.special_symbols.len(),
                policy.length
            ));
        }
        Ok(policy)
    }

    /// How many kinds of character every generated password has (upper case, lower case,
    /// digits, symbols): one of each kind enabled.
    pub fn kinds(&self) -> usize {
        self.classes().len()
    }

    fn classes(&self) -> Vec<Vec<char>> {
        let mut classes = Vec::new();
        if self.uppercase {
            classes.push(('A'..='Z').collect());
        }
        if self.lowercase {
            classes.push(('a'..='z').collect());
        }
        if self.digits {
            classes.push(('0'..='9').collect());
        }
        if !self.special_symbols.is_empty() {
            classes.push(self.special_symbols.clone());
        }
        classes
    }

    /// Generates a password: every enabled class at least once, the rest drawn uniformly from
    /// the enabled characters, then shuffled. `rng` must be cryptographic (the type says so).
    ///
    /// ```
    /// use datasync::transform::PasswordPolicy;
    /// let policy = PasswordPolicy { length: 12, uppercase: true, lowercase: true, digits: true,
    ///     special_symbols: vec!['%', '^'], exclude_similar_symbols: true, manager_notification: false };
    /// let p = policy.generate(&mut rand::rng());
    /// assert_eq!(p.expose().chars().count(), 12);
    /// assert!(p.expose().chars().filter(|c| *c == '%').count() <= 1);
    /// ```
    pub fn generate<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Secret {
        let classes = self.classes();
        let mut out: Vec<char> = Vec::with_capacity(self.length);
        for class in &classes {
            out.push(class[rng.random_range(0..class.len())]);
        }
        let is_special = |c: &char| self.special_symbols.contains(c);
        while out.len() < self.length {
            let pool: Vec<char> = classes
                .iter()
                .flatten()
                .copied()
                .filter(|c| !(self.exclude_similar_symbols && is_special(c) && out.contains(c)))
                .collect();
            // `from_options` guarantees the pool cannot run dry before `length`.
            if pool.is_empty() {
                break;
            }
            out.push(pool[rng.random_range(0..pool.len())]);
        }
        out.shuffle(rng);
        Secret::new(out.into_iter().collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> Result<PasswordRule, PolicyError> {
        PasswordRule::from_options(Some(json))
    }

    #[test]
    fn sample_options_are_static() {
        let sample = r#"{"passwordLength":7,"includeUppercaseAlphabets":true,"includeLowercaseAlphabets":true,"includeDigits":true,"includeSpecialSymbols":false,"specialSymbols":"%^&*(","excludeSimilarSymbols":false,"managerNotification":false,"passwordType":0}"#;
        assert_eq!(rule(sample).unwrap(), PasswordRule::Static);
        assert_eq!(
            PasswordRule::from_options(None).unwrap(),
            PasswordRule::Static
        );
    }

    #[test]
    fn refuses_bad_policies() {
        for bad in [
            r#"{"passwordType":1,"passwordLength":5,"includeDigits":true}"#,
            r#"{"passwordType":1,"passwordLength":100,"includeDigits":true}"#,
            r#"{"passwordType":1,"passwordLength":8}"#,
            r#"{"passwordType":1,"passwordLength":8,"includeSpecialSymbols":true,"specialSymbols":""}"#,
            r#"{"passwordType":1,"passwordLength":8,"includeSpecialSymbols":true,"specialSymbols":"%^","excludeSimilarSymbols":true}"#,
            r#"{"passwordType":7}"#,
            r#"{"passwordType":"#,
        ] {
            assert!(rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_passwords_honour_every_option() {
        let json = r#"{"passwordType":1,"passwordLength":6,"includeUppercaseAlphabets":true,"includeLowercaseAlphabets":false,"includeDigits":true,"includeSpecialSymbols":true,"specialSymbols":"%^&","excludeSimilarSymbols":true}"#;
        let PasswordRule::Generate(policy) = rule(json).unwrap() else {
            panic!("expected a generated rule")
        };
        let mut rng = rand::rng();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let p = policy.generate(&mut rng);
            let s = p.expose();
            assert_eq!(s.chars().count(), 6);
            assert!(s.chars().any(|c| c.is_ascii_uppercase()), "{s}");
            assert!(s.chars().any(|c| c.is_ascii_digit()), "{s}");
            assert!(s.chars().any(|c| "%^&".contains(c)), "{s}");
            assert!(!s.chars().any(|c| c.is_ascii_lowercase()), "{s}");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "%^&".contains(c))
            );
            for sym in "%^&".chars() {
                assert!(s.chars().filter(|c| *c == sym).count() <= 1, "{s}");
            }
            seen.insert(s.to_string());
        }
        assert!(seen.len() > 1990, "passwords repeat: {}", seen.len());
    }

    #[test]
    fn long_passwords_and_symbol_only() {
        let json = r#"{"passwordType":1,"passwordLength":99,"includeLowercaseAlphabets":true}"#;
        let PasswordRule::Generate(policy) = rule(json).unwrap() else {
            panic!("expected a generated rule")
        };
        let p = policy.generate(&mut rand::rng());
        assert_eq!(p.expose().len(), 99);
        assert!(p.expose().chars().all(|c| c.is_ascii_lowercase()));
    }
}

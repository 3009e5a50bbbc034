//! What an ASCII byte is, by one table lookup: the parsers check every character of ids and
//! field names this way instead of making two or three range tests per byte.

/// A letter or a digit.
pub(crate) const ALPHANUMERIC: u8 = 1;
/// A letter.
pub(crate) const LETTER: u8 = 2;
/// An upper-case letter.
pub(crate) const UPPER_CASE: u8 = 4;
/// A letter, a digit or `_`: what may follow the first letter of an API name.
pub(crate) const NAME_CHARACTER: u8 = 8;

/// The class bits of every byte (none for bytes outside ASCII).
pub(crate) const CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric() {
            class |= ALPHANUMERIC | NAME_CHARACTER;
        }
        if b.is_ascii_alphabetic() {
            class |= LETTER;
        }
        if b.is_ascii_uppercase() {
            class |= UPPER_CASE;
        }
        if b == b'_' {
            class |= NAME_CHARACTER;
        }
        classes[byte] = class;
        byte += 1;
    }
    classes
};

/// The class bits of `byte`.
#[inline]
pub(crate) fn class(byte: u8) -> u8 {
    CLASSES[usize::from(byte)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_has_the_classes_of_the_standard_tests() {
        for byte in 0..=u8::MAX {
            let c = class(byte);
            assert_eq!(
                c & ALPHANUMERIC != 0,
                byte.is_ascii_alphanumeric(),
                "{byte}"
            );
            assert_eq!(c & LETTER != 0, byte.is_ascii_alphabetic(), "{byte}");
            assert_eq!(c & UPPER_CASE != 0, byte.is_ascii_uppercase(), "{byte}");
            assert_eq!(
                c & NAME_CHARACTER != 0,
                byte.is_ascii_alphanumeric() || byte == b'_',
                "{byte}"
            );
        }
    }
}

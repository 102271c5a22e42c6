//! Firm profiles: what the ledger knows of a firm beside its money, so that indicators can
//! be grouped by sector and place. A profile is set at registration and changed later by a
//! signed administrative operation with a reason (`OpKind::SetProfile`), so its whole history
//! is in the log.
//!
//! - **Sector**: a NACE rev. 2 code at one of three levels: a section letter (`C`), a
//!   division (`10`) or a class (`10.71`). Divisions and classes are checked against the
//!   classification itself (`NACE_CLASSES`, the 88 divisions and their 615 classes), so
//!   `34` (no such division) or `10.74` (no such class) are refused.
//! - **Commune**: its INSEE code (Code officiel géographique), five characters: a
//!   department (`01` to `95` but `20`, `2A` and `2B` for Corsica, `971` to `978` and `984` to
//!   `989` overseas) and the commune's number in it, e.g. `75056` (Paris), `2A004` (Ajaccio),
//!   `97411` (Saint-Denis, La Réunion). The structure is checked, not membership of the
//!   current list of some 35,000 communes, which changes every year as communes merge.
//! - **Postcode**: five digits (French postcodes), not `00…`.
//! - **Territory**: a free label (a "bassin de vie", a pays, an intercommunality), at most
//!   `TERRITORY_CHARS_MAX` characters, no control or bidirectional characters.
//! - **Size class** by employees: `0`, `1-9`, `10-49`, `50-249`, `250+`.
//!
//! Values are stored as given, once valid: they are the canonical forms (capitals for
//! sections and Corsica, dots in classes); a lower-case section or a class without its dot
//! is refused with the form to write instead, never silently rewritten, since the signed
//! bytes are what the log keeps.

/// Longest territory label, in characters.
pub const TERRITORY_CHARS_MAX: usize = 64;
/// Length of a commune code and of a postcode, in characters.
pub const COMMUNE_CHARS: usize = 5;
pub const POSTCODE_CHARS: usize = 5;
/// Longest value of any profile field as it travels (the territory label, in bytes of
/// UTF-8): anything longer is refused before it is looked at.
pub const PROFILE_FIELD_BYTES_MAX: usize = 4 * TERRITORY_CHARS_MAX;

/// The size classes by number of employees, as written.
pub const SIZE_CLASSES: [&str; 5] = ["0", "1-9", "10-49", "50-249", "250+"];

/// NACE rev. 2: every division with its classes (the two digits after the dot), and the
/// section of each range of divisions. Eurostat, NACE Rev. 2 (2008), the classification in
/// force in the EU and the basis of France's NAF rév. 2.
const NACE_CLASSES: [(u8, &str); 88] = [
    (1, "11 12 13 14 15 16 19 21 22 23 24 25 26 27 28 29 30 41 42 43 44 45 46 47 49 50 61 62 63 64 70"),
    (2, "10 20 30 40"),
    (3, "11 12 21 22"),
    (5, "10 20"),
    (6, "10 20"),
    (7, "10 21 29"),
    (8, "11 12 91 92 93 99"),
    (9, "10 90"),
    (10, "11 12 13 20 31 32 39 41 42 51 52 61 62 71 72 73 81 82 83 84 85 86 89 91 92"),
    (11, "01 02 03 04 05 06 07"),
    (12, "00"),
    (13, "10 20 30 91 92 93 94 95 96 99"),
    (14, "11 12 13 14 19 20 31 39"),
    (15, "11 12 20"),
    (16, "10 21 22 23 24 29"),
    (17, "11 12 21 22 23 24 29"),
    (18, "11 12 13 14 20"),
    (19, "10 20"),
    (20, "11 12 13 14 15 16 17 20 30 41 42 51 52 53 59 60"),
    (21, "10 20"),
    (22, "11 19 21 22 23 29"),
    (23, "11 12 13 14 19 20 31 32 41 42 43 44 49 51 52 61 62 63 64 65 69 70 91 99"),
    (24, "10 20 31 32 33 34 41 42 43 44 45 46 51 52 53 54"),
    (25, "11 12 21 29 30 40 50 61 62 71 72 73 91 92 93 94 99"),
    (26, "11 12 20 30 40 51 52 60 70 80"),
    (27, "11 12 20 31 32 33 40 51 52 90"),
    (28, "11 12 13 14 15 21 22 23 24 25 29 30 41 49 91 92 93 94 95 96 99"),
    (29, "10 20 31 32"),
    (30, "11 12 20 30 40 91 92 99"),
    (31, "01 02 03 09"),
    (32, "11 12 13 20 30 40 50 91 99"),
    (33, "11 12 13 14 15 16 17 19 20"),
    (35, "11 12 13 14 21 22 23 30"),
    (36, "00"),
    (37, "00"),
    (38, "11 12 21 22 31 32"),
    (39, "00"),
    (41, "10 20"),
    (42, "11 12 13 21 22 91 99"),
    (43, "11 12 13 21 22 29 31 32 33 34 39 91 99"),
    (45, "11 19 20 31 32 40"),
    (
        46,
        "11 12 13 14 15 16 17 18 19 21 22 23 24 31 32 33 34 35 36 37 38 39 41 42 43 44 45 46 47 48 49 \
         51 52 61 62 63 64 65 66 69 71 72 73 74 75 76 77 90",
    ),
    (
        47,
        "11 19 21 22 23 24 25 26 29 30 41 42 43 51 52 53 54 59 61 62 63 64 65 71 72 73 74 75 76 77 78 79 \
         81 82 89 91 99",
    ),
    (49, "10 20 31 32 39 41 42 50"),
    (50, "10 20 30 40"),
    (51, "10 21 22"),
    (52, "10 21 22 23 24 29"),
    (53, "10 20"),
    (55, "10 20 30 90"),
    (56, "10 21 29 30"),
    (58, "11 12 13 14 19 21 29"),
    (59, "11 12 13 14 20"),
    (60, "10 20"),
    (61, "10 20 30 90"),
    (62, "01 02 03 09"),
    (63, "11 12 91 99"),
    (64, "11 19 20 30 91 92 99"),
    (65, "11 12 20 30"),
    (66, "11 12 19 21 22 29 30"),
    (68, "10 20 31 32"),
    (69, "10 20"),
    (70, "10 21 22"),
    (71, "11 12 20"),
    (72, "11 19 20"),
    (73, "11 12 20"),
    (74, "10 20 30 90"),
    (75, "00"),
    (77, "11 12 21 22 29 31 32 33 34 35 39 40"),
    (78, "10 20 30"),
    (79, "11 12 90"),
    (80, "10 20 30"),
    (81, "10 21 22 29 30"),
    (82, "11 19 20 30 91 92 99"),
    (84, "11 12 13 21 22 23 24 25 30"),
    (85, "10 20 31 32 41 42 51 52 53 59 60"),
    (86, "10 21 22 23 90"),
    (87, "10 20 30 90"),
    (88, "10 91 99"),
    (90, "01 02 03 04"),
    (91, "01 02 03 04"),
    (92, "00"),
    (93, "11 12 13 19 21 29"),
    (94, "11 12 20 91 92 99"),
    (95, "11 12 21 22 23 24 25 29"),
    (96, "01 02 03 04 09"),
    (97, "00"),
    (98, "10 20"),
    (99, "00"),
];

/// The 21 sections and the first and last division of each.
const NACE_SECTIONS: [(char, u8, u8); 21] = [
    ('A', 1, 3),
    ('B', 5, 9),
    ('C', 10, 33),
    ('D', 35, 35),
    ('E', 36, 39),
    ('F', 41, 43),
    ('G', 45, 47),
    ('H', 49, 53),
    ('I', 55, 56),
    ('J', 58, 63),
    ('K', 64, 66),
    ('L', 68, 68),
    ('M', 69, 75),
    ('N', 77, 82),
    ('O', 84, 84),
    ('P', 85, 85),
    ('Q', 86, 88),
    ('R', 90, 93),
    ('S', 94, 96),
    ('T', 97, 98),
    ('U', 99, 99),
];

fn classes_of(division: u8) -> Option<&'static str> {
    NACE_CLASSES.iter().find(|(d, _)| *d == division).map(|(_, c)| *c)
}

/// The section letter of a division (`10` → `C`).
fn section_of_division(division: u8) -> Option<char> {
    classes_of(division)?;
    NACE_SECTIONS.iter().find(|(_, first, last)| (*first..=*last).contains(&division)).map(|(s, _, _)| *s)
}

fn two_digits(text: &str) -> Option<u8> {
    (text.len() == 2 && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// Checks a NACE rev. 2 code (a section letter, a division `NN` or a class `NN.NN`) and says
/// what is wrong with it.
pub fn check_sector(code: &str) -> Result<(), String> {
    let shown = shown(code);
    let levels =
        "give a section letter (A to U), a division (two digits, e.g. 10) or a class (NN.NN, e.g. 10.71)";
    if code.is_empty() {
        return Err(format!("sector is empty: {levels}"));
    }
    if code.len() == 1 {
        let c = code.chars().next().unwrap_or(' ');
        if NACE_SECTIONS.iter().any(|(s, _, _)| *s == c) {
            return Ok(());
        }
        if NACE_SECTIONS.iter().any(|(s, _, _)| s.to_ascii_lowercase() == c) {
            return Err(format!(
                "sector '{shown}': write the section in capitals, '{}'",
                c.to_ascii_uppercase()
            ));
        }
        return Err(format!("sector '{shown}' is not a NACE rev. 2 section: sections are A to U"));
    }
    if let Some(division) = two_digits(code) {
        return match classes_of(division) {
            Some(_) => Ok(()),
            None => Err(format!(
                "sector '{shown}' is not a NACE rev. 2 division (divisions run from 01 to 99 with gaps: 04, 34, 40, 44, 48, 54, 57, 67, 76, 83, 89 do not exist)"
            )),
        };
    }
    let bytes = code.as_bytes();
    if bytes.len() == 5 && bytes[2] == b'.' {
        let (division, class) = (two_digits(&code[..2]), &code[3..]);
        let Some(division) = division else {
            return Err(format!("sector '{shown}' is not of the form NN.NN"));
        };
        let Some(classes) = classes_of(division) else {
            return Err(format!("sector '{shown}': {:02} is not a NACE rev. 2 division", division));
        };
        if two_digits(class).is_some() && classes.split(' ').any(|c| c == class) {
            return Ok(());
        }
        return Err(format!(
            "sector '{shown}' is not a class of NACE rev. 2 division {division:02}, whose classes are {}",
            classes.split(' ').map(|c| format!("{division:02}.{c}")).collect::<Vec<_>>().join(", ")
        ));
    }
    if bytes.len() == 4 && bytes.iter().all(u8::is_ascii_digit) {
        return Err(format!("sector '{shown}': write a class with its dot, '{}.{}'", &code[..2], &code[2..]));
    }
    if bytes.len() == 6 && bytes[2] == b'.' && bytes[5].is_ascii_alphabetic() {
        return Err(format!(
            "sector '{shown}' looks like a French NAF sub-class: give its NACE class, '{}'",
            &code[..5]
        ));
    }
    Err(format!("sector '{shown}' is not a NACE rev. 2 code: {levels}"))
}

/// The NACE section of a valid sector code (`10.71` → `C`, `10` → `C`, `C` → `C`).
pub fn section(code: &str) -> Option<char> {
    if code.len() == 1 {
        let c = code.chars().next()?;
        return NACE_SECTIONS.iter().any(|(s, _, _)| *s == c).then_some(c);
    }
    section_of_division(two_digits(code.get(..2)?)?)
}

/// The NACE division of a valid sector code given at division or class level (`10.71` →
/// `10`); `None` for a section letter.
pub fn division(code: &str) -> Option<&str> {
    let d = code.get(..2)?;
    section_of_division(two_digits(d)?).map(|_| d)
}

/// Checks an INSEE commune code and says what is wrong with it.
pub fn check_commune(code: &str) -> Result<(), String> {
    let shown = shown(code);
    let example = "e.g. 75056 (Paris), 2A004 (Ajaccio), 97411 (Saint-Denis, La Réunion)";
    let b = code.as_bytes();
    if b.len() != COMMUNE_CHARS || !b.is_ascii() {
        return Err(format!(
            "commune '{shown}' is not an INSEE commune code: it has five characters, {example}"
        ));
    }
    let (department, number) = match &code[..2] {
        "2A" | "2B" => (&code[..2], &code[2..]),
        "2a" | "2b" => {
            return Err(format!(
                "commune '{shown}': write the Corsican department in capitals, '{}{}'",
                code[..2].to_ascii_uppercase(),
                &code[2..]
            ));
        }
        "20" => {
            return Err(format!(
                "commune '{shown}': Corsican communes are numbered 2A… (Corse-du-Sud) or 2B… (Haute-Corse), not 20…"
            ));
        }
        "97" | "98" => (&code[..3], &code[3..]),
        _ => (&code[..2], &code[2..]),
    };
    if !number.bytes().all(|c| c.is_ascii_digit()) || !department.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("commune '{shown}' is not an INSEE commune code: {example}"));
    }
    let valid_department = match department {
        "2A" | "2B" => true,
        d if d.len() == 2 => d.parse::<u8>().is_ok_and(|d| (1..=95).contains(&d)),
        d => d.parse::<u16>().is_ok_and(|d| (971..=978).contains(&d) || (984..=989).contains(&d)),
    };
    if !valid_department {
        return Err(format!(
            "commune '{shown}': department {department} does not exist (01 to 95, 2A, 2B, 971 to 978, 984 to 989)"
        ));
    }
    if number.bytes().all(|c| c == b'0') {
        return Err(format!("commune '{shown}': commune numbers start at 1, not 0"));
    }
    Ok(())
}

/// Checks a French postcode and says what is wrong with it.
pub fn check_postcode(code: &str) -> Result<(), String> {
    let shown = shown(code);
    if code.len() != POSTCODE_CHARS || !code.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("postcode '{shown}' is not a French postcode: five digits, e.g. 75001"));
    }
    if code.starts_with("00") {
        return Err(format!("postcode '{shown}': no postcode starts with 00"));
    }
    Ok(())
}

/// Checks a territory label and says what is wrong with it.
pub fn check_territory(label: &str) -> Result<(), String> {
    let chars = label.chars().count();
    if label.trim().is_empty() {
        return Err("territory label is blank: give a label, or remove the territory".into());
    }
    if chars > TERRITORY_CHARS_MAX {
        return Err(format!("territory label has {chars} characters, the maximum is {TERRITORY_CHARS_MAX}"));
    }
    if label.chars().any(char::is_control) {
        return Err("territory label: control characters are not allowed".into());
    }
    if let Some(c) = label.chars().find(|c| crate::state::is_bidi_control(*c)) {
        return Err(format!(
            "territory label: the bidirectional control character U+{:04X} is not allowed",
            u32::from(c)
        ));
    }
    if label.trim() != label {
        return Err("territory label starts or ends with spaces".into());
    }
    Ok(())
}

/// Checks a size class and says what is wrong with it.
pub fn check_size_class(class: &str) -> Result<(), String> {
    if SIZE_CLASSES.contains(&class) {
        return Ok(());
    }
    Err(format!(
        "size class '{}' is not one of {} (employees)",
        shown(class),
        SIZE_CLASSES.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ")
    ))
}

/// A value as an error message shows it: at most 40 characters, control characters escaped.
fn shown(text: &str) -> String {
    text.chars().take(40).flat_map(char::escape_debug).collect()
}

/// The fields of a firm's profile (its display name is the account's). `None`: not known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub sector: Option<String>,
    pub commune: Option<String>,
    pub postcode: Option<String>,
    pub territory: Option<String>,
    pub size_class: Option<String>,
}

/// The fields of a profile, for iterating over them in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Sector,
    Commune,
    Postcode,
    Territory,
    SizeClass,
}

impl Field {
    pub const ALL: [Field; 5] =
        [Field::Sector, Field::Commune, Field::Postcode, Field::Territory, Field::SizeClass];

    pub fn name(self) -> &'static str {
        match self {
            Field::Sector => "sector",
            Field::Commune => "commune",
            Field::Postcode => "postcode",
            Field::Territory => "territory",
            Field::SizeClass => "size class",
        }
    }

    /// Checks a value of this field.
    pub fn check(self, value: &str) -> Result<(), String> {
        if value.len() > PROFILE_FIELD_BYTES_MAX {
            return Err(format!("{} is {} bytes long, far too long", self.name(), value.len()));
        }
        match self {
            Field::Sector => check_sector(value),
            Field::Commune => check_commune(value),
            Field::Postcode => check_postcode(value),
            Field::Territory => check_territory(value),
            Field::SizeClass => check_size_class(value),
        }
    }
}

impl Profile {
    pub fn is_empty(&self) -> bool {
        *self == Profile::default()
    }

    pub fn get(&self, field: Field) -> Option<&str> {
        match field {
            Field::Sector => self.sector.as_deref(),
            Field::Commune => self.commune.as_deref(),
            Field::Postcode => self.postcode.as_deref(),
            Field::Territory => self.territory.as_deref(),
            Field::SizeClass => self.size_class.as_deref(),
        }
    }

    pub fn slot(&mut self, field: Field) -> &mut Option<String> {
        match field {
            Field::Sector => &mut self.sector,
            Field::Commune => &mut self.commune,
            Field::Postcode => &mut self.postcode,
            Field::Territory => &mut self.territory,
            Field::SizeClass => &mut self.size_class,
        }
    }

    /// Checks every field that is set, in the order of `Field::ALL`.
    pub fn check(&self) -> Result<(), String> {
        for field in Field::ALL {
            if let Some(value) = self.get(field) {
                field.check(value)?;
            }
        }
        Ok(())
    }
}

/// A change of a profile: per field, `None` keeps it, `Some(None)` removes it, `Some(Some(v))`
/// sets it to `v`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub sector: Option<Option<String>>,
    pub commune: Option<Option<String>>,
    pub postcode: Option<Option<String>>,
    pub territory: Option<Option<String>>,
    pub size_class: Option<Option<String>>,
}

impl ProfileChange {
    pub fn get(&self, field: Field) -> Option<Option<&str>> {
        let slot = match field {
            Field::Sector => &self.sector,
            Field::Commune => &self.commune,
            Field::Postcode => &self.postcode,
            Field::Territory => &self.territory,
            Field::SizeClass => &self.size_class,
        };
        slot.as_ref().map(Option::as_deref)
    }

    pub fn slot(&mut self, field: Field) -> &mut Option<Option<String>> {
        match field {
            Field::Sector => &mut self.sector,
            Field::Commune => &mut self.commune,
            Field::Postcode => &mut self.postcode,
            Field::Territory => &mut self.territory,
            Field::SizeClass => &mut self.size_class,
        }
    }

    pub fn is_empty(&self) -> bool {
        Field::ALL.iter().all(|f| self.get(*f).is_none())
    }

    /// Checks every value set, in the order of `Field::ALL`.
    pub fn check(&self) -> Result<(), String> {
        for field in Field::ALL {
            if let Some(Some(value)) = self.get(field) {
                field.check(value)?;
            }
        }
        Ok(())
    }

    /// The profile after the change.
    pub fn apply(&self, profile: &mut Profile) {
        for field in Field::ALL {
            if let Some(value) = self.get(field) {
                *profile.slot(field) = value.map(str::to_string);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(field: Field, value: &str, expected: Result<(), &str>) {
        match (field.check(value), expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(needle)) => assert!(e.contains(needle), "{value:?}: {e:?} lacks {needle:?}"),
            (got, want) => panic!("{value:?}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn the_classification_is_complete() {
        assert_eq!(NACE_CLASSES.len(), 88, "88 divisions");
        let classes: usize = NACE_CLASSES.iter().map(|(_, c)| c.split(' ').count()).sum();
        assert_eq!(classes, 615, "615 classes");
        for (division, classes) in NACE_CLASSES {
            assert!(section_of_division(division).is_some(), "division {division} has a section");
            let list: Vec<&str> = classes.split(' ').collect();
            assert!(list.windows(2).all(|w| w[0] < w[1]), "division {division}'s classes are sorted");
            assert!(list.iter().all(|c| two_digits(c).is_some()), "division {division}");
        }
        assert!(NACE_CLASSES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn sectors() {
        for ok in ["A", "C", "U", "01", "10", "47", "99", "10.71", "01.11", "62.01", "47.11", "99.00"] {
            check(Field::Sector, ok, Ok(()));
        }
        check(Field::Sector, "V", Err("sections are A to U"));
        check(Field::Sector, "c", Err("in capitals, 'C'"));
        check(Field::Sector, "34", Err("is not a NACE rev. 2 division"));
        check(Field::Sector, "00", Err("is not a NACE rev. 2 division"));
        check(Field::Sector, "10.74", Err("is not a class of NACE rev. 2 division 10"));
        check(Field::Sector, "34.10", Err("34 is not a NACE rev. 2 division"));
        check(Field::Sector, "1071", Err("with its dot, '10.71'"));
        check(Field::Sector, "10.71C", Err("NAF sub-class"));
        check(Field::Sector, "10.7", Err("is not a NACE rev. 2 code"));
        check(Field::Sector, "", Err("sector is empty"));
        check(Field::Sector, "boulangerie", Err("is not a NACE rev. 2 code"));
        assert_eq!((section("10.71"), section("47"), section("Q")), (Some('C'), Some('G'), Some('Q')));
        assert_eq!((division("10.71"), division("47"), division("Q")), (Some("10"), Some("47"), None));
    }

    #[test]
    fn communes() {
        for ok in ["75056", "2A004", "2B033", "97411", "97101", "98735", "01001", "95690", "75101"] {
            check(Field::Commune, ok, Ok(()));
        }
        check(Field::Commune, "7505", Err("five characters"));
        check(Field::Commune, "750560", Err("five characters"));
        check(Field::Commune, "20004", Err("2A… (Corse-du-Sud)"));
        check(Field::Commune, "2a004", Err("in capitals, '2A004'"));
        check(Field::Commune, "96001", Err("department 96 does not exist"));
        check(Field::Commune, "00001", Err("department 00 does not exist"));
        check(Field::Commune, "97911", Err("department 979 does not exist"));
        check(Field::Commune, "75000", Err("start at 1"));
        check(Field::Commune, "7505A", Err("is not an INSEE commune code"));
        check(Field::Commune, "2C004", Err("department 2C does not exist"));
        check(Field::Commune, "é5056", Err("five characters"));
    }

    #[test]
    fn postcodes_territories_and_sizes() {
        check(Field::Postcode, "75001", Ok(()));
        check(Field::Postcode, "20000", Ok(()));
        check(Field::Postcode, "7500", Err("five digits"));
        check(Field::Postcode, "00100", Err("starts with 00"));
        check(Field::Territory, "Bassin de vie de Lunel", Ok(()));
        check(Field::Territory, &"é".repeat(TERRITORY_CHARS_MAX), Ok(()));
        check(Field::Territory, &"é".repeat(TERRITORY_CHARS_MAX + 1), Err("the maximum is 64"));
        check(Field::Territory, "  ", Err("blank"));
        check(Field::Territory, "a\nb", Err("control characters"));
        check(Field::Territory, "a\u{202E}b", Err("U+202E"));
        check(Field::Territory, " Lunel", Err("spaces"));
        check(Field::Territory, &"x".repeat(1000), Err("far too long"));
        for ok in SIZE_CLASSES {
            check(Field::SizeClass, ok, Ok(()));
        }
        check(Field::SizeClass, "10-50", Err("is not one of '0', '1-9'"));
    }

    #[test]
    fn a_change_keeps_removes_and_sets() {
        let mut profile =
            Profile { sector: Some("C".into()), commune: Some("75056".into()), ..Profile::default() };
        let change = ProfileChange {
            sector: Some(Some("10.71".into())),
            commune: Some(None),
            size_class: Some(Some("1-9".into())),
            ..ProfileChange::default()
        };
        change.apply(&mut profile);
        assert_eq!(
            profile,
            Profile { sector: Some("10.71".into()), size_class: Some("1-9".into()), ..Profile::default() }
        );
        assert!(ProfileChange::default().is_empty() && !change.is_empty());
    }
}

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::ids::SalesforceId;

const USER_ID: &str = "0058a00000LmN2pAAF";

fn user(fields: Value) -> SourceUser {
    let mut u = SourceUser::new(SalesforceId::parse(USER_ID).unwrap());
    if let Value::Object(map) = fields {
        u.fields = map.into_iter().collect();
    }
    u
}

/// Marta as an Outbound Message delivers her: every value is text.
fn marta() -> SourceUser {
    user(json!({
        "FirstName": "Marta",
        "LastName": "Fernández",
        "Email": "Marta.Fernandez@Acme.example",
        "Department": "Sales",
        "IsActive": "true",
        "Salary__c": "45000.0",
        "Level__c": "3.0",
        "Groups__c": "Sales; Support;;",
        "HireDate__c": "2024-02-01",
        "LastModifiedDate": "2025-03-14T16:02:11.000Z",
        "Title": null,
        "Nickname__c": "  ",
    }))
}

fn tables() -> Tables {
    let mut departments = BTreeMap::new();
    departments.insert("Sales".to_owned(), "SLS".to_owned());
    departments.insert("Support".to_owned(), "SUP".to_owned());
    let mut tables = Tables::new();
    tables.insert("departments".to_owned(), departments);
    tables.insert("regions".to_owned(), BTreeMap::new());
    tables
}

fn parse(source: &str) -> Expr {
    match Expr::parse(source, &tables()) {
        Ok(expr) => expr,
        Err(e) => panic!("{source:?} does not parse: {e}"),
    }
}

fn parse_error(source: &str) -> ParseError {
    match Expr::parse(source, &tables()) {
        Ok(expr) => panic!("{source:?} parsed, as {expr:?}"),
        Err(e) => e,
    }
}

fn eval_on(source: &str, u: &SourceUser) -> Value {
    match parse(source).eval(u) {
        Ok(value) => value,
        Err(e) => panic!("{source:?} fails: {e}"),
    }
}

fn eval(source: &str) -> Value {
    eval_on(source, &marta())
}

fn eval_error_on(source: &str, u: &SourceUser) -> EvalError {
    match parse(source).eval(u) {
        Ok(value) => panic!("{source:?} evaluated to {value}"),
        Err(e) => e,
    }
}

fn eval_error(source: &str) -> EvalError {
    eval_error_on(source, &marta())
}

fn holds_on(source: &str, u: &SourceUser) -> bool {
    match parse(source).eval_bool(u) {
        Ok(b) => b,
        Err(e) => panic!("{source:?} fails: {e}"),
    }
}

fn holds(source: &str) -> bool {
    holds_on(source, &marta())
}

fn mismatch(
    function: &'static str,
    argument: usize,
    expected: &'static str,
    found: &'static str,
) -> EvalError {
    EvalError::TypeMismatch {
        function,
        argument,
        expected,
        found,
    }
}

/// Marta with `IsActive` as a JSON boolean, the way platform events carry it.
fn marta_from_event() -> SourceUser {
    let mut u = marta();
    u.fields.insert("IsActive".into(), json!(true));
    u.fields
        .insert("Roles__c".into(), json!(["admin", "editor"]));
    u.fields.insert("Score__c".into(), json!(45000.0));
    u.fields
        .insert("Manager".into(), json!({"Email": "boss@acme.example"}));
    u
}

// ---- values and fields --------------------------------------------------------------------

#[test]
fn a_bare_field_returns_its_value_unchanged() {
    assert_eq!(eval("FirstName"), json!("Marta"));
    assert_eq!(eval_on("Score__c", &marta_from_event()), json!(45000.0));
    assert_eq!(eval("Title"), Value::Null);
    assert_eq!(eval("NotSent__c"), Value::Null);
}

#[test]
fn id_is_the_user_id() {
    assert_eq!(eval("Id"), json!(USER_ID));
    assert_eq!(eval("lower(ID)"), json!(USER_ID.to_lowercase()));
}

#[test]
fn field_names_are_case_insensitive_like_salesforce_api_names() {
    assert_eq!(eval("firstname"), json!("Marta"));
    assert_eq!(eval("upper(FIRSTNAME)"), json!("MARTA"));
}

#[test]
fn dotted_names_read_flat_keys_and_nested_objects() {
    let mut u = marta_from_event();
    assert_eq!(eval_on("Manager.Email", &u), json!("boss@acme.example"));
    u.fields
        .insert("Account.Name".into(), json!("Acme Corporation"));
    assert_eq!(
        eval_on("lower(Account.Name)", &u),
        json!("acme corporation")
    );
    assert_eq!(eval_on("Manager.Phone", &u), Value::Null);
}

#[test]
fn literals_have_their_types() {
    assert_eq!(eval("\"a\\\"b\\\\c\\n\\t\\u{e9}\""), json!("a\"b\\c\n\té"));
    assert_eq!(eval("'it\\'s'"), json!("it's"));
    assert_eq!(eval("'say \"hi\"'"), json!("say \"hi\""));
    assert_eq!(eval("42"), json!(42));
    assert_eq!(eval("-1.5"), json!(-1.5));
    assert_eq!(eval("TRUE"), json!(true));
    assert_eq!(eval("null"), Value::Null);
}

#[test]
fn whole_numbers_are_written_without_a_trailing_zero() {
    assert_eq!(eval("text(Salary__c)"), json!("45000.0"));
    assert_eq!(eval("text(number(Salary__c))"), json!("45000"));
    assert_eq!(eval("number(Salary__c)"), json!(45000));
    assert_eq!(
        eval_on("text(Score__c)", &marta_from_event()),
        json!("45000")
    );
    assert_eq!(
        eval_on("concat(Score__c, \"/yr\")", &marta_from_event()),
        json!("45000/yr")
    );
    assert_eq!(eval("text(2.5)"), json!("2.5"));
}

#[test]
fn source_and_field_reference_are_reported() {
    let expr = parse("concat(FirstName, \" \", LastName)");
    assert_eq!(expr.source(), "concat(FirstName, \" \", LastName)");
    assert_eq!(expr.as_field_reference(), None);
    assert_eq!(parse("Email").as_field_reference(), Some("Email"));
    assert_eq!(parse("(Email)").as_field_reference(), Some("Email"));
}

#[test]
fn fields_lists_every_field_read_sorted_and_once() {
    let expr = parse(
        "if(Department in [\"Sales\", Other__c], concat(LastName, Id), lookup(Department, \"departments\")) and Email is not null and FirstName == LastName",
    );
    assert_eq!(
        expr.fields(),
        vec![
            "Department",
            "Email",
            "FirstName",
            "Id",
            "LastName",
            "Other__c"
        ]
    );
    assert!(parse("\"x\"").fields().is_empty());
}

// ---- functions ----------------------------------------------------------------------------

#[test]
fn concat_joins_text_and_is_null_when_a_part_is_null() {
    assert_eq!(
        eval("concat(FirstName, \" \", LastName)"),
        json!("Marta Fernández")
    );
    assert_eq!(eval("concat(FirstName, Title)"), Value::Null);
    assert_eq!(eval("CONCAT(\"L\", Level__c)"), json!("L3.0"));
    assert_eq!(
        eval_error_on("concat(FirstName, IsActive)", &marta_from_event()),
        mismatch("concat", 2, "text", "true/false")
    );
}

#[test]
fn join_skips_null_and_blank_values_and_flattens_lists() {
    assert_eq!(
        eval("join(\" \", FirstName, Title, Nickname__c, LastName)"),
        json!("Marta Fernández")
    );
    assert_eq!(
        eval("join(\",\", split(Groups__c, \";\"), \"All\")"),
        json!("Sales,Support,All")
    );
    assert_eq!(eval("join(\",\", Title, Nickname__c)"), Value::Null);
    assert_eq!(eval("join(Title, FirstName)"), Value::Null);
    assert_eq!(
        eval_error_on("join(\",\", IsActive)", &marta_from_event()),
        mismatch("join", 2, "text or a list", "true/false")
    );
}

#[test]
fn split_gives_trimmed_non_empty_parts() {
    assert_eq!(eval("split(Groups__c, \";\")"), json!(["Sales", "Support"]));
    assert_eq!(
        eval("split(lower(Groups__c), \";\")"),
        json!(["sales", "support"])
    );
    assert_eq!(eval("split(Title, \";\")"), Value::Null);
    assert_eq!(
        eval_error("split(Groups__c, \"\")"),
        EvalError::InvalidArgument {
            function: "split",
            argument: 2,
            problem: "must not be empty".into()
        }
    );
    assert_eq!(
        eval_error_on("split(Roles__c, \",\")", &marta_from_event()),
        mismatch("split", 1, "text", "a list")
    );
}

#[test]
fn lower_and_upper_change_case_including_accents() {
    assert_eq!(eval("lower(LastName)"), json!("fernández"));
    assert_eq!(eval("upper(LastName)"), json!("FERNÁNDEZ"));
    assert_eq!(eval("Lower(Title)"), Value::Null);
    assert_eq!(eval("upper(Title)"), Value::Null);
    assert_eq!(
        eval_error_on("lower(IsActive)", &marta_from_event()),
        mismatch("lower", 1, "text", "true/false")
    );
    assert_eq!(
        eval_error_on("upper(Roles__c)", &marta_from_event()),
        mismatch("upper", 1, "text", "a list")
    );
}

#[test]
fn trim_removes_outer_whitespace() {
    assert_eq!(eval("trim(\"  a b \\t\")"), json!("a b"));
    assert_eq!(eval("trim(Nickname__c)"), json!(""));
    assert_eq!(eval("trim(Title)"), Value::Null);
    assert_eq!(
        eval_error_on("trim(Roles__c)", &marta_from_event()),
        mismatch("trim", 1, "text", "a list")
    );
}

#[test]
fn replace_replaces_every_plain_occurrence() {
    assert_eq!(eval("replace(\"a.b.c\", \".\", \"-\")"), json!("a-b-c"));
    assert_eq!(eval("replace(\"abc\", \"\", \"-\")"), json!("abc"));
    assert_eq!(eval("replace(FirstName, \"a\", \"A\")"), json!("MArtA"));
    assert_eq!(eval("replace(Title, \"a\", \"b\")"), Value::Null);
    assert_eq!(
        eval_error_on("replace(FirstName, IsActive, \"x\")", &marta_from_event()),
        mismatch("replace", 2, "text", "true/false")
    );
}

#[test]
fn substring_counts_characters_from_one() {
    assert_eq!(eval("substring(LastName, 6, 3)"), json!("nde"));
    assert_eq!(eval("substring(LastName, 7)"), json!("dez"));
    assert_eq!(eval("substring(LastName, 2, 100)"), json!("ernández"));
    assert_eq!(eval("substring(LastName, 50, 2)"), json!(""));
    assert_eq!(eval("substring(LastName, \"2\", \"3.0\")"), json!("ern"));
    assert_eq!(eval("substring(Title, 1, 2)"), Value::Null);
    assert_eq!(
        eval_error("substring(LastName, 0, 2)"),
        EvalError::InvalidArgument {
            function: "substring",
            argument: 2,
            problem: "must be 1 or more (the first character is 1)".into()
        }
    );
    assert_eq!(
        eval_error("substring(LastName, 1, -2)"),
        EvalError::InvalidArgument {
            function: "substring",
            argument: 3,
            problem: "must not be negative".into()
        }
    );
    assert_eq!(
        eval_error("substring(LastName, 1.5, 2)"),
        mismatch("substring", 2, "a whole number", "a number")
    );
    assert_eq!(
        eval_error("substring(LastName, FirstName, 2)"),
        mismatch("substring", 2, "a whole number", "text")
    );
}

#[test]
fn left_and_right_take_characters_from_either_end() {
    assert_eq!(eval("left(LastName, 6)"), json!("Fernán"));
    assert_eq!(eval("right(LastName, 4)"), json!("ndez"));
    assert_eq!(eval("left(FirstName, 99)"), json!("Marta"));
    assert_eq!(eval("right(FirstName, 0)"), json!(""));
    assert_eq!(eval("left(Title, 2)"), Value::Null);
    assert_eq!(eval("right(FirstName, Title)"), Value::Null);
    assert_eq!(
        eval_error_on("left(Roles__c, 1)", &marta_from_event()),
        mismatch("left", 1, "text", "a list")
    );
    assert_eq!(
        eval_error("right(FirstName, -1)"),
        EvalError::InvalidArgument {
            function: "right",
            argument: 2,
            problem: "must not be negative".into()
        }
    );
}

#[test]
fn length_counts_characters() {
    assert_eq!(eval("length(LastName)"), json!(9));
    assert_eq!(eval("length(Title)"), Value::Null);
    assert_eq!(
        eval_error_on("length(IsActive)", &marta_from_event()),
        mismatch("length", 1, "text", "true/false")
    );
}

#[test]
fn coalesce_and_default_pick_the_first_non_blank_value() {
    assert_eq!(
        eval("coalesce(Title, Nickname__c, FirstName, LastName)"),
        json!("Marta")
    );
    assert_eq!(eval("coalesce(Title, Nickname__c)"), Value::Null);
    assert_eq!(eval("default(Title, \"Staff\")"), json!("Staff"));
    assert_eq!(eval("default(Department, \"Staff\")"), json!("Sales"));
    assert_eq!(
        eval_on("default(Roles__c, \"x\")", &marta_from_event()),
        json!(["admin", "editor"])
    );
}

#[test]
fn coalesce_does_not_evaluate_past_the_first_value() {
    // The second argument would fail; it is never reached.
    assert_eq!(
        eval_on("coalesce(FirstName, lower(IsActive))", &marta_from_event()),
        json!("Marta")
    );
}

#[test]
fn if_chooses_by_a_condition() {
    assert_eq!(
        eval("if(Department == \"Sales\", \"S\", \"O\")"),
        json!("S")
    );
    assert_eq!(eval("if(IsActive, \"on\", \"off\")"), json!("on"));
    assert_eq!(
        eval_on("if(IsActive, \"on\", \"off\")", &marta_from_event()),
        json!("on")
    );
    assert_eq!(eval("if(Title, \"t\", \"none\")"), json!("none"));
    assert_eq!(eval("if(false, \"t\")"), Value::Null);
    assert_eq!(
        eval_error("if(FirstName, 1, 2)"),
        EvalError::NotBoolean {
            context: "if",
            found: "text"
        }
    );
}

#[test]
fn switch_returns_the_result_of_the_first_matching_key() {
    let rule = "switch(Department, \"Sales\", \"S\", \"Support\", \"X\", \"other\")";
    assert_eq!(eval(rule), json!("S"));
    let mut u = marta();
    u.fields.insert("Department".into(), json!("Legal"));
    assert_eq!(eval_on(rule, &u), json!("other"));
    u.fields.insert("Department".into(), Value::Null);
    assert_eq!(eval_on(rule, &u), json!("other"));
    assert_eq!(eval_on("switch(Department, \"a\", 1)", &u), Value::Null);
    assert_eq!(
        eval("switch(Level__c, 1, \"one\", 3, \"three\")"),
        json!("three")
    );
    assert_eq!(
        eval_on(
            "switch(IsActive, true, \"yes\", \"no\")",
            &marta_from_event()
        ),
        json!("yes")
    );
    assert_eq!(
        eval("switch(IsActive, true, \"yes\", \"no\")"),
        json!("yes")
    );
}

#[test]
fn lookup_reads_a_table_given_at_compile_time() {
    assert_eq!(eval("lookup(Department, \"departments\")"), json!("SLS"));
    assert_eq!(eval("lookup(\"Legal\", \"departments\")"), Value::Null);
    assert_eq!(
        eval("default(lookup(\"Legal\", \"departments\"), \"GEN\")"),
        json!("GEN")
    );
    assert_eq!(eval("lookup(Title, \"departments\")"), Value::Null);
    assert_eq!(
        eval_error_on("lookup(IsActive, \"departments\")", &marta_from_event()),
        mismatch("lookup", 1, "text", "true/false")
    );
}

#[test]
fn normalize_diacritics_transliterates_latin_letters() {
    let cases = [
        ("Fernández", "Fernandez"),
        ("Müller", "Muller"),
        ("Straße", "Strasse"),
        ("GROSSE ẞ", "GROSSE SS"),
        ("Søren Ødegård", "Soren Odegard"),
        ("Æsir Cæsar", "AEsir Caesar"),
        ("Œuvre cœur", "OEuvre coeur"),
        ("Łódź", "Lodz"),
        ("Đorđe", "Dorde"),
        ("Þór", "Thor"),
        ("François Nuñez", "Francois Nunez"),
        ("Nguyễn Thị Ánh", "Nguyen Thi Anh"),
        ("Dvořák Šťastný", "Dvorak Stastny"),
        ("İstanbul ığ", "Istanbul ig"),
        ("Ǿ", "O"),
        // Not Latin: the mark makes another letter, so it stays.
        ("Андрей Йошкар", "Андрей Йошкар"),
        ("がっこう", "がっこう"),
        ("plain ascii", "plain ascii"),
    ];
    for (input, expected) in cases {
        let u = user(json!({ "Name": input }));
        assert_eq!(
            eval_on("normalize_diacritics(Name)", &u),
            json!(expected),
            "{input}"
        );
    }
    assert_eq!(eval("normalize_diacritics(Title)"), Value::Null);
    assert_eq!(
        eval_error_on("normalize_diacritics(Roles__c)", &marta_from_event()),
        mismatch("normalize_diacritics", 1, "text", "a list")
    );
}

#[test]
fn email_parts_split_at_the_at_sign() {
    assert_eq!(eval("email_local(Email)"), json!("Marta.Fernandez"));
    assert_eq!(eval("email_domain(Email)"), json!("Acme.example"));
    assert_eq!(eval("lower(email_domain(Email))"), json!("acme.example"));
    assert_eq!(eval("email_local(\"no-at-sign\")"), Value::Null);
    assert_eq!(eval("email_domain(\"user@\")"), Value::Null);
    assert_eq!(eval("email_local(Title)"), Value::Null);
    assert_eq!(
        eval_error_on("email_domain(IsActive)", &marta_from_event()),
        mismatch("email_domain", 1, "text", "true/false")
    );
}

#[test]
fn format_date_reads_rfc3339_dates_and_epoch_millis() {
    assert_eq!(
        eval("format_date(LastModifiedDate, \"%d/%m/%Y %H:%M:%S\")"),
        json!("14/03/2025 16:02:11")
    );
    assert_eq!(
        eval("format_date(HireDate__c, \"date\")"),
        json!("2024-02-01")
    );
    assert_eq!(
        eval("format_date(HireDate__c, \"iso\")"),
        json!("2024-02-01T00:00:00Z")
    );
    assert_eq!(
        eval("format_date(\"2025-03-14T23:30:00-05:00\", \"iso\")"),
        json!("2025-03-15T04:30:00Z")
    );
    assert_eq!(
        eval("format_date(1741968131000, \"iso\")"),
        json!("2025-03-14T16:02:11Z")
    );
    assert_eq!(
        eval("format_date(\"1741968131000\", \"100%% %Y\")"),
        json!("100% 2025")
    );
    assert_eq!(eval("format_date(Title, \"date\")"), Value::Null);
    assert_eq!(
        eval_error("format_date(FirstName, \"date\")"),
        EvalError::InvalidArgument {
            function: "format_date",
            argument: 1,
            problem: "is not a date: expected RFC 3339 (2025-03-14T16:02:11Z), YYYY-MM-DD or epoch milliseconds".into()
        }
    );
    assert_eq!(
        eval_error_on("format_date(IsActive, \"date\")", &marta_from_event()),
        mismatch("format_date", 1, "a date", "true/false")
    );
}

#[test]
fn constant_text_and_number_convert_values() {
    assert_eq!(eval("constant(\"Employee\")"), json!("Employee"));
    assert_eq!(eval("constant(Title)"), Value::Null);
    assert_eq!(
        eval_on("text(IsActive)", &marta_from_event()),
        json!("true")
    );
    assert_eq!(eval("text(Title)"), Value::Null);
    assert_eq!(
        eval_error_on("text(Roles__c)", &marta_from_event()),
        mismatch("text", 1, "a single value", "a list")
    );
    assert_eq!(eval("number(\" 12.50 \")"), json!(12.5));
    assert_eq!(eval("number(Nickname__c)"), Value::Null);
    assert_eq!(
        eval_error("number(\"inf\")"),
        EvalError::InvalidArgument {
            function: "number",
            argument: 1,
            problem: "is not a number".into()
        }
    );
    assert_eq!(
        eval_error_on("number(IsActive)", &marta_from_event()),
        mismatch("number", 1, "text or a number", "true/false")
    );
}

#[test]
fn first_and_count_read_lists() {
    assert_eq!(eval("first(split(Groups__c, \";\"))"), json!("Sales"));
    assert_eq!(eval("count(split(Groups__c, \";\"))"), json!(2));
    assert_eq!(
        eval_on("first(Roles__c)", &marta_from_event()),
        json!("admin")
    );
    assert_eq!(eval("first(split(Nickname__c, \";\"))"), Value::Null);
    assert_eq!(eval("first(Title)"), Value::Null);
    assert_eq!(eval("count(Title)"), json!(0));
    assert_eq!(
        eval_error("first(FirstName)"),
        mismatch("first", 1, "a list", "text")
    );
    assert_eq!(
        eval_error("count(FirstName)"),
        mismatch("count", 1, "a list", "text")
    );
}

#[test]
fn text_tests_work_as_operators_and_as_functions() {
    assert!(holds("Email ends_with \"@Acme.example\""));
    assert!(holds("ends_with(Email, \"@Acme.example\")"));
    assert!(!holds("Email ends_with \"@acme.example\""));
    assert!(holds("lower(Email) ends_with \"@acme.example\""));
    assert!(holds("FirstName STARTS_WITH \"Ma\""));
    assert!(holds("starts_with(FirstName, \"Ma\")"));
    assert!(holds("LastName contains \"nánd\""));
    assert!(holds("contains(LastName, \"nánd\")"));
    assert!(!holds("Title contains \"x\""));
    assert!(!holds("Title starts_with \"x\""));
    assert!(holds("split(Groups__c, \";\") contains \"Support\""));
    assert!(!holds("split(Groups__c, \";\") contains \"Supp\""));
    assert_eq!(
        eval_error_on("IsActive contains \"t\"", &marta_from_event()),
        mismatch("contains", 1, "text", "true/false")
    );
    assert_eq!(
        eval_error_on("Roles__c starts_with \"a\"", &marta_from_event()),
        mismatch("starts_with", 1, "text", "a list")
    );
}

#[test]
fn every_documented_function_is_callable_and_every_callable_function_is_documented() {
    let documented: Vec<&str> = FUNCTIONS.iter().map(|(name, _)| *name).collect();
    let specified: Vec<&str> = functions::SPECS.iter().map(|s| s.name).collect();
    assert_eq!(documented, specified);
    for (name, doc) in FUNCTIONS {
        assert!(doc.starts_with(&format!("{name}(")), "{name}: {doc}");
        assert!(doc.contains(") - "), "{name}: {doc}");
    }
}

// ---- filters ------------------------------------------------------------------------------

#[test]
fn is_active_equals_true_for_outbound_message_text_and_event_booleans() {
    let from_message = marta();
    let from_event = marta_from_event();
    for u in [&from_message, &from_event] {
        assert!(holds_on("IsActive == true", u));
        assert!(holds_on("IsActive", u));
        assert!(!holds_on("IsActive == false", u));
        assert!(!holds_on("not IsActive", u));
        assert!(holds_on("IsActive != false", u));
    }
    let inactive = user(json!({"IsActive": "False"}));
    assert!(holds_on("IsActive == false", &inactive));
    assert!(!holds_on("IsActive", &inactive));
}

#[test]
fn numbers_compare_with_salesforce_number_text() {
    assert!(holds("Level__c == 3"));
    assert!(holds("Salary__c == 45000"));
    assert!(holds("Level__c in [1, 2, 3]"));
    assert!(!holds("Level__c == \"3\""));
    assert!(holds("Level__c == \"3.0\""));
}

#[test]
fn text_comparison_is_case_sensitive_unless_lowered() {
    assert!(holds("Department == \"Sales\""));
    assert!(!holds("Department == \"sales\""));
    assert!(holds("lower(Department) == \"sales\""));
    assert!(holds("Department != \"Support\""));
}

#[test]
fn in_and_not_in_test_membership() {
    assert!(holds("Department in [\"Sales\", \"Support\"]"));
    assert!(holds("Department IN ['Sales', 'Support',]"));
    assert!(!holds("Department in [\"Legal\"]"));
    assert!(holds("Department not in [\"Legal\", \"HR\"]"));
    assert!(!holds("Department in []"));
    assert!(holds("\"Support\" in split(Groups__c, \";\")"));
    assert!(holds_on("\"editor\" in Roles__c", &marta_from_event()));
    assert!(!holds("\"x\" in split(Title, \";\")"));
    assert_eq!(
        eval_error("Department in FirstName"),
        mismatch("in", 2, "a list", "text")
    );
}

#[test]
fn a_missing_field_is_in_nothing_and_not_in_everything() {
    assert!(!holds("Title in [\"CEO\"]"));
    assert!(holds("Title not in [\"CEO\"]"));
}

#[test]
fn is_null_is_true_for_null_absent_and_blank_fields() {
    assert!(holds("Title is null"));
    assert!(holds("NotSent__c is null"));
    assert!(holds("Nickname__c IS NULL"));
    assert!(!holds("FirstName is null"));
    assert!(holds("FirstName is not null"));
    assert!(holds("Title == null"));
    assert!(!holds("FirstName == null"));
}

#[test]
fn precedence_is_not_then_and_then_or() {
    // not binds tighter than and: (not false) and false.
    assert!(!holds("not false and false"));
    // and binds tighter than or: true or (false and false).
    assert!(holds("true or false and false"));
    // (false and false) or true.
    assert!(holds("false and false or true"));
    // not applies to the whole comparison.
    assert!(holds("not Department == \"Legal\""));
    assert!(holds("not not true"));
    assert!(!holds("not (true or false) and true"));
    assert!(holds(
        "(Department == \"Legal\" or Department == \"Sales\") and IsActive"
    ));
    assert!(holds(
        "Department == \"Legal\" or Department == \"Sales\" and IsActive"
    ));
}

#[test]
fn logic_keywords_are_case_insensitive() {
    assert!(holds("IsActive AND Department == \"Sales\""));
    assert!(holds("NOT false Or FALSE"));
}

#[test]
fn and_and_or_stop_at_the_first_deciding_operand() {
    assert!(!holds("false and FirstName"));
    assert!(holds("true or FirstName"));
}

#[test]
fn a_filter_that_is_not_a_condition_is_an_error() {
    assert_eq!(
        parse("FirstName").eval_bool(&marta()).unwrap_err(),
        EvalError::NotBoolean {
            context: "filter",
            found: "text"
        }
    );
    assert_eq!(
        parse("FirstName and true").eval_bool(&marta()).unwrap_err(),
        EvalError::NotBoolean {
            context: "and",
            found: "text"
        }
    );
    assert_eq!(
        parse("split(Groups__c, \";\")")
            .eval_bool(&marta())
            .unwrap_err(),
        EvalError::NotBoolean {
            context: "filter",
            found: "a list"
        }
    );
    assert!(!parse("Title").eval_bool(&marta()).unwrap());
}

#[test]
fn a_realistic_scope_filter() {
    let filter = "IsActive == true and Department in [\"Sales\", \"Support\"] and lower(Email) ends_with \"@acme.example\" and not (Title is not null and Title contains \"Contractor\")";
    assert!(holds(filter));
    assert!(holds_on(filter, &marta_from_event()));
    let mut contractor = marta();
    contractor
        .fields
        .insert("Title".into(), json!("Contractor, Sales"));
    assert!(!holds_on(filter, &contractor));
}

#[test]
fn errors_display_the_function_and_argument() {
    assert_eq!(
        mismatch("lower", 1, "text", "a list").to_string(),
        "lower: argument 1 must be text, found a list"
    );
    assert_eq!(
        parse_error("lowr(x)").to_string(),
        "column 1: unknown function lowr; did you mean lower?"
    );
}

// ---- parse errors -------------------------------------------------------------------------

fn assert_parse_error(source: &str, column: usize, message_part: &str) {
    let error = parse_error(source);
    assert_eq!(error.column, column, "{source:?}: {error}");
    assert!(
        error.message.contains(message_part),
        "{source:?}: {:?} should contain {message_part:?}",
        error.message
    );
}

#[test]
fn an_unclosed_string_points_at_its_opening_quote() {
    assert_parse_error(
        "concat(FirstName, \" x)",
        19,
        "never closed: add a closing \"",
    );
    assert_parse_error("'abc", 1, "closing '");
}

#[test]
fn an_unknown_function_suggests_the_closest_name() {
    assert_parse_error(
        "concatt(FirstName)",
        1,
        "unknown function concatt; did you mean concat?",
    );
    assert_parse_error("lower(Tolower(x))", 7, "did you mean lower?");
    assert_parse_error(
        "x == NormalizeDiacritics(x)",
        6,
        "did you mean normalize_diacritics?",
    );
    assert_parse_error("IIF(a, b, c)", 1, "did you mean if?");
    assert_parse_error("isblank(a)", 1, "did you mean `is null`?");
    let error = parse_error("frobnicate(a)");
    assert_eq!(error.message, "unknown function frobnicate");
}

#[test]
fn a_wrong_argument_count_names_the_signature() {
    assert_parse_error("lower()", 1, "lower takes 1 argument, given 0: lower(text)");
    assert_parse_error(
        "x == replace(a, b)",
        6,
        "replace takes 3 arguments, given 2: replace(text, find, replacement)",
    );
    assert_parse_error(
        "substring(a, 1, 2, 3)",
        1,
        "takes 2 to 3 arguments, given 4",
    );
    assert_parse_error("concat()", 1, "takes at least 1 argument");
    assert_parse_error("switch(a, b)", 1, "takes at least 3 arguments, given 2");
}

#[test]
fn trailing_tokens_are_reported_where_they_start() {
    assert_parse_error(
        "FirstName LastName",
        11,
        "unexpected `LastName` after a complete expression",
    );
    assert_parse_error("lower(x))", 9, "this ) has no matching (");
    assert_parse_error("a, b", 2, "a comma only separates");
    assert_parse_error("a == b == c", 8, "comparisons cannot be chained");
}

#[test]
fn bad_operators_say_what_to_write() {
    assert_parse_error("Department = \"Sales\"", 12, "use ==");
    assert_parse_error("a && b", 3, "use `and`");
    assert_parse_error("a || b", 3, "use `or`");
    assert_parse_error("!a", 1, "use `not`");
    assert_parse_error("a <> b", 3, "use !=");
    assert_parse_error("Level__c > 3", 10, "not supported");
    assert_parse_error("FirstName + LastName", 11, "use concat");
    assert_parse_error("a is b", 6, "expected `null` after `is`");
}

#[test]
fn missing_values_and_brackets_are_located() {
    assert_parse_error("", 1, "empty");
    assert_parse_error("   ", 1, "empty");
    assert_parse_error("a and", 6, "ends too early");
    assert_parse_error(
        "lower(a",
        8,
        "expected , or ) in the call to lower at column 1",
    );
    assert_parse_error("(a == b", 8, "expected ) to close the ( at column 1");
    assert_parse_error(
        "a in [\"x\" \"y\"]",
        11,
        "expected , or ] to continue the list opened at column 6",
    );
    assert_parse_error("concat(a,)", 10, "expected a value, found `)`");
    assert_parse_error("[\"a\"]", 1, "can only follow `in`");
    assert_parse_error("a == and", 6, "found the keyword `and`");
    assert_parse_error("contains == 1", 1, "goes between two values");
}

#[test]
fn lexical_errors_are_located() {
    assert_parse_error("\"a\\qb\"", 3, "unknown escape \\q");
    assert_parse_error("\"\\u{110000}\"", 2, "is not a character");
    assert_parse_error("\"\\u00e9\"", 2, "\\u{...}");
    assert_parse_error("1.", 2, "decimal point");
    assert_parse_error("12ab", 3, "after a number");
    assert_parse_error("Manager.", 8, "must be followed by a field name");
    assert_parse_error("Prénom", 3, "unexpected character 'é'");
    assert_parse_error("_x", 1, "unexpected character '_'");
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_parse_error("\"ééé\" == x ==", 12, "chained");
}

#[test]
fn lookup_tables_and_date_formats_are_checked_when_parsing() {
    assert_parse_error(
        "lookup(Department, \"depts\")",
        20,
        "there is no lookup table named \"depts\"; the tables are: departments, regions",
    );
    assert_parse_error("lookup(Department, Department)", 20, "must be quoted text");
    let no_tables = Expr::parse("lookup(a, \"t\")", &Tables::new()).unwrap_err();
    assert!(no_tables.message.contains("no lookup tables are defined"));
    assert_parse_error("format_date(a, \"%Q\")", 16, "unknown date directive %Q");
    assert_parse_error("format_date(a, \"50%\")", 16, "lone %");
    assert_parse_error("format_date(a, b)", 16, "must be quoted text");
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!("{}a{}", "(".repeat(500), ")".repeat(500));
    assert!(parse_error(&deep).message.contains("nested too deeply"));
    let nots = format!("{}true", "not ".repeat(500));
    assert!(parse_error(&nots).message.contains("nested too deeply"));
    let calls = format!("{}a{}", "lower(".repeat(500), ")".repeat(500));
    assert!(parse_error(&calls).message.contains("nested too deeply"));
    assert!(Expr::parse(&format!("{}a{}", "(".repeat(30), ")".repeat(30)), &tables()).is_ok());
}

// ---- never panics -------------------------------------------------------------------------

/// Valid expressions covering every function and operator, for the random-snapshot test.
const VALID: &[&str] = &[
    "concat(FirstName, \" \", LastName)",
    "join(\" \", FirstName, Title, LastName)",
    "split(Groups__c, \";\")",
    "lower(Email)",
    "upper(LastName)",
    "trim(Nickname__c)",
    "replace(Email, \"@\", \"_at_\")",
    "substring(LastName, 2, 3)",
    "substring(LastName, Level__c)",
    "left(FirstName, 1)",
    "right(LastName, Level__c)",
    "length(FirstName)",
    "coalesce(Nickname__c, FirstName)",
    "default(Title, \"Staff\")",
    "if(IsActive, \"on\", \"off\")",
    "switch(Department, \"Sales\", 1, \"Support\", 2, 3)",
    "lookup(Department, \"departments\")",
    "normalize_diacritics(LastName)",
    "email_local(Email)",
    "email_domain(Email)",
    "format_date(LastModifiedDate, \"iso\")",
    "format_date(HireDate__c, \"%d.%m.%Y\")",
    "constant(Salary__c)",
    "text(Salary__c)",
    "number(Salary__c)",
    "first(split(Groups__c, \";\"))",
    "count(Roles__c)",
    "IsActive == true and Department in [\"Sales\", 1, true] or not (Email ends_with \"x\")",
    "Title is null or Title is not null",
    "FirstName starts_with LastName and LastName contains FirstName",
    "\"a\" in split(Groups__c, \",\") or Level__c not in [1, 2]",
    "Manager.Email != Email",
    "Id",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "(true|false|TRUE| 3.0|-0|1e400|2025-03-14T16:02:11Z|2024-02-30|[0-9]{1,20})"
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELD_NAMES: &[&str] = &[
    "FirstName",
    "LastName",
    "Email",
    "Department",
    "IsActive",
    "Salary__c",
    "Level__c",
    "Groups__c",
    "Roles__c",
    "HireDate__c",
    "LastModifiedDate",
    "Title",
    "Nickname__c",
    "Manager",
    "Manager.Email",
];

proptest! {
    #[test]
    fn parsing_any_text_never_panics(source in "\\PC{0,60}") {
        let _ = Expr::parse(&source, &tables());
    }

    #[test]
    fn parsing_expression_like_text_never_panics(
        source in "[a-zA-Z_ .,()\\[\\]\"'\\\\=!<>0-9-]{0,60}"
    ) {
        if let Ok(expr) = Expr::parse(&source, &tables()) {
            let _ = expr.eval(&marta());
            let _ = expr.eval_bool(&marta());
        }
    }

    #[test]
    fn evaluating_valid_expressions_on_any_snapshot_never_panics(
        values in prop::collection::vec(json_value(), FIELD_NAMES.len())
    ) {
        let mut u = user(json!({}));
        for (name, value) in FIELD_NAMES.iter().zip(values) {
            u.fields.insert((*name).to_owned(), value);
        }
        for source in VALID {
            let expr = parse(source);
            let _ = expr.eval(&u);
            let _ = expr.eval_bool(&u);
        }
    }
}

#[test]
fn every_valid_sample_evaluates_on_marta() {
    for source in VALID {
        let expr = parse(source);
        expr.eval(&marta_from_event())
            .unwrap_or_else(|e| panic!("{source}: {e}"));
    }
}

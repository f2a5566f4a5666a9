//! Presence Redundancy Groups (CL-4): two nodes that take over each
//! other's calendar users, as the administrator types them on System >
//! Presence Redundancy Groups.

/// *Failover After*'s bounds and default, seconds.
pub const FAILOVER_AFTER_MIN: u32 = 10;
pub const FAILOVER_AFTER_MAX: u32 = 300;
pub const FAILOVER_AFTER_DEFAULT: u32 = 30;

/// A group as the form gives it, checked field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupForm {
    pub name: String,
    pub node_a: String,
    pub node_b: String,
    pub high_availability: bool,
    pub failover_after: u32,
}

/// Each field's problem, by field name (`name`, `node_a`, `node_b`,
/// `failover_after`).
pub type FieldProblems = Vec<(&'static str, String)>;

impl GroupForm {
    pub const NAME_MAX: usize = 64;

    pub fn parse(
        name: &str,
        node_a: &str,
        node_b: &str,
        high_availability: bool,
        failover_after: &str,
    ) -> Result<GroupForm, FieldProblems> {
        let mut problems = FieldProblems::new();
        let name = name.trim();
        if name.is_empty() {
            problems.push(("name", "Enter a name for the group.".to_owned()));
        } else if name.chars().count() > Self::NAME_MAX {
            problems.push((
                "name",
                format!("A name is at most {} characters long.", Self::NAME_MAX),
            ));
        } else if name.chars().any(char::is_control) {
            problems.push((
                "name",
                "A name cannot contain control characters.".to_owned(),
            ));
        }
        let (node_a, node_b) = (node_a.trim(), node_b.trim());
        if node_a.is_empty() {
            problems.push(("node_a", "Choose the group's first node.".to_owned()));
        }
        if node_b.is_empty() {
            problems.push(("node_b", "Choose the group's second node.".to_owned()));
        } else if node_b == node_a {
            problems.push((
                "node_b",
                "Choose a node other than the first: a node cannot take over its own users."
                    .to_owned(),
            ));
        }
        let failover = match failover_after.trim().parse::<u32>() {
            Ok(s) if (FAILOVER_AFTER_MIN..=FAILOVER_AFTER_MAX).contains(&s) => s,
            _ => {
                problems.push((
                    "failover_after",
                    format!(
                        "Enter a whole number of seconds from {FAILOVER_AFTER_MIN} to \
                         {FAILOVER_AFTER_MAX}."
                    ),
                ));
                FAILOVER_AFTER_DEFAULT
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(GroupForm {
            name: name.to_owned(),
            node_a: node_a.to_owned(),
            node_b: node_b.to_owned(),
            high_availability,
            failover_after: failover,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_two_different_nodes_and_a_bounded_failover() {
        let group = GroupForm::parse(" Pair 1 ", "alice-node", "bob-node", true, "30").unwrap();
        assert_eq!(group.name, "Pair 1");
        assert_eq!(group.failover_after, 30);
        let fields = |r: Result<GroupForm, FieldProblems>| -> Vec<&'static str> {
            r.unwrap_err().into_iter().map(|(f, _)| f).collect()
        };
        assert_eq!(fields(GroupForm::parse("", "a", "b", true, "30")), ["name"]);
        assert_eq!(
            fields(GroupForm::parse("p", "a", "a", true, "30")),
            ["node_b"]
        );
        assert_eq!(
            fields(GroupForm::parse("p", "", "", false, "30")),
            ["node_a", "node_b"]
        );
        for bad in ["9", "301", "", "thirty", "-5", "30.5"] {
            assert_eq!(
                fields(GroupForm::parse("p", "a", "b", true, bad)),
                ["failover_after"]
            );
        }
        assert!(GroupForm::parse("p", "a", "b", true, "10").is_ok());
        assert!(GroupForm::parse("p", "a", "b", true, "300").is_ok());
        assert!(GroupForm::parse(&"x".repeat(65), "a", "b", true, "30").is_err());
    }
}

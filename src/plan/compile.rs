//! [`compile`]: a wire job checked, every mistake collected, and compiled into a [`Plan`].
//!
//! One function a part of the JSON: a field mapping (`field_plan`), a type's queries
//! (`queries`), its containers and scope (`ObjectPart::containers`), then the checks across
//! types (`check_across_types`).

use super::{ContainerRule, DeleteThreshold, FieldPlan, Naming, ObjectPlan, Plan, names_member_of};
use crate::dn::Dn;
use crate::job::wire::{self, DataSyncJob, FieldMap, ObjectsOption, SyncQuery};
use crate::job::{JobError, JobErrors, ObjectType, job_name, parse_bool};
use crate::query::{Filter, parse_destination_query};
use crate::transform::{PasswordRule, Transform, TransformContext};

/// The mistakes found so far, each with where it is in the JSON.
#[derive(Default)]
struct Errors(Vec<JobError>);

impl Errors {
    fn add(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.0.push(JobError {
            location: location.into(),
            message: message.into(),
        });
    }
}

/// The job's `settings` list, read by key.
struct Settings<'a>(&'a [wire::Setting]);

impl Settings<'_> {
    /// A setting for this object type, else the general one.
    fn get(&self, key: &str, object_type: Option<i64>) -> Option<&str> {
        let matching = |s: &&wire::Setting| s.key.text().eq_ignore_ascii_case(key);
        let specific = object_type.and_then(|t| {
            self.0
                .iter()
                .filter(matching)
                .find(|s| s.object_type.get() == Some(&t))
        });
        specific
            .or_else(|| {
                self.0
                    .iter()
                    .filter(matching)
                    .find(|s| s.object_type.get().is_none())
            })
            .map(|s| s.value.text().trim())
            .filter(|v| !v.is_empty())
    }
}

/// `Destination.DeleteThreshold`: a count (`500`, the default) or a percentage (`10%`).
fn delete_threshold(value: Option<&str>, errors: &mut Errors) -> DeleteThreshold {
    let Some(v) = value else {
        return DeleteThreshold::Count(500);
    };
    match v.strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => DeleteThreshold::Percent(p),
            _ => {
                errors.add(
                    "settings[Destination.DeleteThreshold]",
                    format!("\"{v}\" is not a percentage from 0% to 100%"),
                );
                DeleteThreshold::Count(500)
            }
        },
        None => match v.parse::<usize>() {
            Ok(n) => DeleteThreshold::Count(n),
            Err(_) => {
                errors.add(
                    "settings[Destination.DeleteThreshold]",
                    format!("\"{v}\" is not a count or a percentage"),
                );
                DeleteThreshold::Count(500)
            }
        },
    }
}

/// Checks a job and compiles it into a [`Plan`]; all mistakes are returned together.
///
/// ```
/// let json = std::fs::read_to_string("fixtures/jobs/groupid-sample.json").unwrap();
/// let job = datasync::job::from_json(&json, "sample").unwrap();
/// let plan = datasync::plan::compile(&job, &Default::default()).unwrap();
/// assert_eq!(plan.objects[0].destination_filter.to_string(), "(objectClass=user)");
/// ```
pub fn compile(job: &DataSyncJob, context: &TransformContext) -> Result<Plan, JobErrors> {
    let mut errors = Errors::default();
    let empty = Vec::new();
    let fields_map = job.fields_map.get().unwrap_or(&empty);
    let objects_option = job.objects_option.get().unwrap_or(&Vec::new()).clone();
    let sync_query = job.sync_query.get().cloned().unwrap_or_default();
    let settings_list = job.settings.get().cloned().unwrap_or_default();
    let settings = Settings(&settings_list);
    let table = table_name(&settings, &mut errors);
    if objects_option.is_empty() {
        errors.add("objectsOption", "no object type to synchronise");
    }
    let mut objects: Vec<ObjectPlan> = Vec::new();
    for (oi, option) in objects_option.iter().enumerate() {
        if option.is_selected.get() == Some(&false) {
            continue;
        }
        let Some(&code) = option.object_type.get() else {
            errors.add(format!("objectsOption[{oi}].objectType"), "missing");
            continue;
        };
        if objects.iter().any(|o| o.object_type.code() == code) {
            errors.add(
                format!("objectsOption[{oi}].objectType"),
                format!("object type {code} appears twice"),
            );
            continue;
        }
        let part = ObjectPart {
            index: oi,
            option,
            code,
            settings: &settings,
            table: table.as_deref(),
            context,
        };
        objects.push(part.plan(fields_map, &sync_query, &mut errors));
    }
    check_across_types(
        &objects,
        table.as_deref(),
        fields_map,
        &objects_option,
        &mut errors,
    );
    if !errors.0.is_empty() {
        // A job-wide setting is checked once per object type: say each mistake once.
        let mut seen = std::collections::HashSet::new();
        errors
            .0
            .retain(|e| seen.insert((e.location.clone(), e.message.clone())));
        return Err(JobErrors(errors.0));
    }
    Ok(Plan {
        name: job_name(job),
        objects,
        table,
        source_file: settings.get("Source.File", None).map(String::from),
        destination_provider: settings
            .get("Destination.ProviderName", None)
            .map(String::from),
    })
}

/// `Destination.IsTableProvider` and `Destination.Table`: the table a job writes, if any.
fn table_name(settings: &Settings<'_>, errors: &mut Errors) -> Option<String> {
    let v = settings.get("Destination.IsTableProvider", None)?;
    match parse_bool(v) {
        Some(true) => Some(
            settings
                .get("Destination.Table", None)
                .unwrap_or("Sheet1")
                .to_string(),
        ),
        Some(false) => None,
        None => {
            errors.add(
                "settings[Destination.IsTableProvider]",
                format!("\"{v}\" is not True or False"),
            );
            None
        }
    }
}

/// One selected entry of `objectsOption`, with what compiling it reads besides.
struct ObjectPart<'a> {
    /// Its index in `objectsOption`.
    index: usize,
    option: &'a ObjectsOption,
    code: i64,
    settings: &'a Settings<'a>,
    table: Option<&'a str>,
    context: &'a TransformContext,
}

impl ObjectPart<'_> {
    fn here(&self, field: &str) -> String {
        format!("objectsOption[{}].{field}", self.index)
    }

    /// A setting for this object type, else the general one.
    fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key, Some(self.code))
    }

    /// The type's plan: its fields, keys, queries, and (for a directory) containers.
    fn plan(
        &self,
        fields_map: &[FieldMap],
        sync_query: &[SyncQuery],
        errors: &mut Errors,
    ) -> ObjectPlan {
        let code = self.code;
        let option = self.option;
        let table = self.table;
        let object_type = ObjectType::from_code(code);
        let mut fields: Vec<FieldPlan> = Vec::new();
        for (fi, f) in fields_map.iter().enumerate() {
            if f.object_type.get().copied().unwrap_or(1) != code {
                continue;
            }
            if let Some(field) =
                field_plan(fi, f, code, &fields, table.is_some(), self.context, errors)
            {
                fields.push(field);
            }
        }
        let key_fields: Vec<usize> = (0..fields.len()).filter(|i| fields[*i].is_key).collect();
        if key_fields.is_empty() {
            errors.add("fieldsMap", format!("no key field for object type {code}"));
        }
        // A table's rows are named by their keys; a directory's objects by their cn.
        let rdn_field = fields
            .iter()
            .position(|f| f.attribute.eq_ignore_ascii_case("cn"))
            .filter(|_| table.is_none());
        let create = option.is_create.or(false);
        if create && rdn_field.is_none() && table.is_none() {
            errors.add(
                "fieldsMap",
                format!("no cn field for object type {code} (new objects are named CN=<cn>)"),
            );
        }
        if create
            && table.is_none()
            && object_type.default_object_classes().is_none()
            && !fields
                .iter()
                .any(|f| f.attribute.eq_ignore_ascii_case("objectClass"))
        {
            errors.add(
                "fieldsMap",
                format!("object type {code} has no built-in object classes: map objectClass"),
            );
        }

        let queries = queries(code, object_type, sync_query, errors);
        let delete_threshold =
            delete_threshold(self.setting("Destination.DeleteThreshold"), errors);
        if table.is_some() {
            // A table: every row in scope (the destination query is for a directory's
            // classes, which rows do not have), no containers.
            return ObjectPlan {
                object_type,
                display_name: option.display_name.text().to_string(),
                create,
                delete: option.is_delete.or(false),
                deprovision: false,
                container: ContainerRule::Fixed(crate::destination::TABLE_DN.into()),
                create_containers: false,
                scope_base: crate::destination::TABLE_DN.into(),
                subtree: false,
                source_query: queries.source_query,
                destination_query: String::new(),
                destination_filter: Filter::And(vec![]),
                fields,
                key_fields,
                rdn_field: None,
                naming: Naming::Keys,
                delete_threshold,
                deprovision_container: None,
                time_stamp_field: queries.time_stamp_field,
                update_all: queries.update_all,
            };
        }
        let place = self.containers(errors);
        ObjectPlan {
            object_type,
            display_name: option.display_name.text().to_string(),
            create,
            delete: option.is_delete.or(false),
            deprovision: option.is_deprovisioning.or(false),
            container: place.container,
            create_containers: place.create_containers,
            scope_base: place.scope_base,
            subtree: place.subtree,
            source_query: queries.source_query,
            destination_query: queries.destination_query,
            destination_filter: queries.destination_filter,
            fields,
            key_fields,
            rdn_field,
            naming: Naming::Cn,
            delete_threshold,
            deprovision_container: place.deprovision_container,
            time_stamp_field: queries.time_stamp_field,
            update_all: queries.update_all,
        }
    }

    /// Where a directory type's objects are made and looked for.
    fn containers(&self, errors: &mut Errors) -> Place {
        let option = self.option;
        let code = self.code;
        let context = self.context;
        let here = |field: &str| self.here(field);
        let setting = |key: &str| self.setting(key);
        let valid_dn = |dn: &str| Dn::parse(dn).map(|_| ()).map_err(|e| e.to_string());
        let value = option.container_option_value.text().trim().to_string();
        // `false` once the container rule itself is wrong: the checks that build on it would
        // only add errors that follow from that one.
        let mut container_known = true;
        let container = match option.container_option.text().trim() {
            "" | "1" => {
                let dn = if value.is_empty() {
                    setting("Destination.Container").unwrap_or("").to_string()
                } else {
                    value.clone()
                };
                if dn.is_empty() {
                    errors.add(
                        here("containerOptionValue"),
                        "no container (and no Destination.Container setting)",
                    );
                } else if let Err(e) = valid_dn(&dn) {
                    errors.add(here("containerOptionValue"), e);
                }
                ContainerRule::Fixed(dn)
            }
            "2" => {
                if value.is_empty() {
                    errors.add(
                        here("containerOptionValue"),
                        "name the source field that holds the container",
                    );
                }
                ContainerRule::FromField(value.clone())
            }
            "3" => match context.scripts.script(&value) {
                Some(script) => ContainerRule::FromScript(script),
                None => {
                    errors.add(
                        here("containerOptionValue"),
                        format!("container script \"{value}\" is not registered by the host"),
                    );
                    container_known = false;
                    ContainerRule::Fixed(String::new())
                }
            },
            other => {
                errors.add(
                here("containerOption"),
                format!(
                    "\"{other}\" is not 1 (this container), 2 (from a source field) or 3 (from a script)"
                ),
            );
                container_known = false;
                ContainerRule::Fixed(String::new())
            }
        };
        let scope_base = match (setting("Destination.Container"), &container) {
            (Some(dn), _) => {
                if let Err(e) = valid_dn(dn) {
                    errors.add("settings[Destination.Container]", e);
                }
                dn.to_string()
            }
            (None, ContainerRule::Fixed(dn)) => dn.clone(),
            (None, _) if !container_known => String::new(),
            (None, _) => {
                errors.add(
                    "settings[Destination.Container]",
                    format!("needed to find existing objects of type {code}"),
                );
                String::new()
            }
        };
        let subtree = match setting("Destination.ShouldIncludeSubTree") {
            None => true,
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                errors.add(
                    "settings[Destination.ShouldIncludeSubTree]",
                    format!("\"{v}\" is not True or False"),
                );
                true
            }),
        };
        // New objects must land where the next run looks, or every run creates them again.
        if let (ContainerRule::Fixed(container), Ok(base)) = (&container, Dn::parse(&scope_base))
            && container_known
            && let Ok(c) = Dn::parse(container)
            && !scope_base.is_empty()
        {
            let found = if subtree {
                c.is_within(&base)
            } else {
                c.normalized() == base.normalized()
            };
            if !found {
                errors.add(
                here("containerOptionValue"),
                format!(
                    "{container} is outside the scope {scope_base} ({}): objects created there would not be found by the next run",
                    if subtree { "subtree" } else { "one level" }
                ),
            );
            }
        }
        let deprovision_container = setting("Destination.DeprovisionContainer").map(String::from);
        if let Some(dn) = &deprovision_container
            && let Err(e) = valid_dn(dn)
        {
            errors.add("settings[Destination.DeprovisionContainer]", e);
        }
        let strategy = option.create_object_container_strategy.or(0);
        if !(0..=1).contains(&strategy) {
            errors.add(
                here("createObjectContainerStrategy"),
                format!("{strategy} is not 0 (fail when missing) or 1 (create missing)"),
            );
        }
        Place {
            container,
            create_containers: strategy == 1,
            scope_base,
            subtree,
            deprovision_container,
        }
    }
}

/// A directory type's containers and scope.
struct Place {
    container: ContainerRule,
    create_containers: bool,
    scope_base: String,
    subtree: bool,
    deprovision_container: Option<String>,
}

/// Mapping `fieldsMap[fi]` of object type `code`, checked against the type's `earlier`
/// mappings; `None` (with the reason in `errors`) when it cannot be used.
fn field_plan(
    fi: usize,
    f: &FieldMap,
    code: i64,
    earlier: &[FieldPlan],
    is_table: bool,
    context: &TransformContext,
    errors: &mut Errors,
) -> Option<FieldPlan> {
    let at = |field: &str| format!("fieldsMap[{fi}].{field}");
    let attribute = f.destination_field.text().trim().to_string();
    if attribute.is_empty() {
        errors.add(at("destinationField"), "empty");
        return None;
    }
    if let Err(why) = crate::destination::check_attribute_description(&attribute) {
        errors.add(at("destinationField"), why);
        return None;
    }
    if [
        "objectGUID",
        "objectSid",
        "whenCreated",
        "whenChanged",
        "uSNCreated",
        "uSNChanged",
    ]
    .iter()
    .any(|r| r.eq_ignore_ascii_case(&attribute))
    {
        errors.add(
            at("destinationField"),
            format!("{attribute} is set by the directory itself; a job cannot map it"),
        );
        return None;
    }
    if ["dn", "distinguishedName", "changetype"]
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&attribute))
    {
        errors.add(
            at("destinationField"),
            format!("{attribute} cannot be set: an object's DN is made from its cn and container"),
        );
        return None;
    }
    if earlier
        .iter()
        .any(|p| p.attribute.eq_ignore_ascii_case(&attribute))
    {
        errors.add(
            at("destinationField"),
            format!("{attribute} is mapped twice for object type {code}"),
        );
        return None;
    }
    let source_field = f
        .source_field
        .get()
        .map(String::as_str)
        .filter(|s| !s.trim().is_empty());
    // Any password attribute, however it is spelt in the field map, is the password:
    // the destination stores it in its own form (a hash, unicodePwd), never as text.
    let password = if crate::destination::is_password_attribute(&attribute) {
        match PasswordRule::from_options(f.options.get().map(String::as_str)) {
            Ok(rule) => Some(rule),
            Err(e) => {
                errors.add(at("options"), e);
                return None;
            }
        }
    } else {
        None
    };
    if password.is_some() && is_table {
        errors.add(
            at("destinationField"),
            format!(
                "{attribute}: a table never holds passwords (it would keep them as plain text); remove this mapping for a table destination"
            ),
        );
        return None;
    }
    if password.is_some() && earlier.iter().any(|p| p.password.is_some()) {
        errors.add(
            at("destinationField"),
            format!("the password is mapped twice for object type {code}"),
        );
        return None;
    }
    // A generated password needs no source field and no transform (the product writes
    // both empty for it).
    let generated_without_input = matches!(password, Some(PasswordRule::Generate(_)))
        && source_field.is_none()
        && f.transform.text().trim().is_empty();
    let parsed = if generated_without_input {
        Ok(Transform::Static(Vec::new()))
    } else {
        Transform::parse(f.transform.text(), source_field, context)
    };
    let transform = match parsed {
        Ok(t) => t,
        Err(e) => {
            let which = if f.transform.text().trim().is_empty() {
                "sourceField"
            } else {
                "transform"
            };
            errors.add(at(which), e.to_string());
            return None;
        }
    };
    let is_key = f.is_key.or(false);
    if is_key && matches!(transform, Transform::Resolve { .. }) {
        errors.add(
            at("isKey"),
            "a Resolve field cannot be a key (its value is only known after matching)",
        );
        return None;
    }
    if is_key && password.is_some() {
        errors.add(at("isKey"), "the password cannot be a key");
        return None;
    }
    let delimiter = f.delimiter.get().filter(|d| !d.is_empty()).cloned();
    if is_key && delimiter.is_some() {
        errors.add(at("delimiter"), "a key field cannot be multi-valued");
        return None;
    }
    if names_member_of(&attribute) && !matches!(transform, Transform::Resolve { .. }) {
        errors.add(
            at("transform"),
            "memberOf is computed by the directory from the groups' members: map it with a Resolve to the groups' key attribute (Resolve:field=Groups;attribute=cn) and a delimiter, and the groups get the object as a member",
        );
        return None;
    }
    Some(FieldPlan {
        map_index: fi,
        attribute: attribute.into(),
        transform,
        is_key,
        // The product forces "new only" on for keys: a key never changes.
        create_only: f.for_create_only.or(false) || is_key,
        delimiter,
        password,
    })
}

/// A type's source and destination queries.
struct Queries {
    source_query: String,
    time_stamp_field: Option<String>,
    update_all: bool,
    destination_query: String,
    destination_filter: Filter,
}

/// The `syncQuery` entries of object type `code`: its source query (with the delta's time
/// stamp field) and its destination query, parsed.
fn queries(
    code: i64,
    object_type: ObjectType,
    sync_query: &[SyncQuery],
    errors: &mut Errors,
) -> Queries {
    let queries_of = |source: bool| {
        sync_query
            .iter()
            .enumerate()
            .filter(move |(_, q)| {
                q.object_type.get().copied().unwrap_or(1) == code
                    && q.is_source
                        .or(q.query_type.text().eq_ignore_ascii_case("SQL"))
                        == source
            })
            .collect::<Vec<_>>()
    };
    let source_queries = queries_of(true);
    let source_query = match source_queries.first() {
        Some((_, q)) if !q.query.text().trim().is_empty() => q.query.text().to_string(),
        Some((qi, _)) => {
            errors.add(format!("syncQuery[{qi}].query"), "empty source query");
            String::new()
        }
        None => {
            errors.add(
                "syncQuery",
                format!("no source query for object type {code}"),
            );
            String::new()
        }
    };
    let (time_stamp_field, update_all) = source_queries
        .first()
        .map(|(_, q)| {
            (
                q.time_stamp_field
                    .get()
                    .filter(|t| !t.trim().is_empty())
                    .cloned(),
                q.update_all.or(true),
            )
        })
        .unwrap_or((None, true));
    let destination = queries_of(false);
    let (destination_query, query_location) = match destination.first() {
        Some((qi, q)) if !q.query.text().trim().is_empty() => {
            (q.query.text().to_string(), format!("syncQuery[{qi}].query"))
        }
        _ => match object_type.default_query() {
            Some(q) => (q.to_string(), "syncQuery".to_string()),
            None => {
                errors.add(
                    "syncQuery",
                    format!("no destination query for object type {code}"),
                );
                (String::new(), String::new())
            }
        },
    };
    let destination_filter = if destination_query.is_empty() {
        Filter::And(vec![])
    } else {
        match parse_destination_query(&destination_query) {
            Ok(f) => f,
            Err(e) => {
                errors.add(query_location, e.to_string());
                Filter::And(vec![])
            }
        }
    };
    Queries {
        source_query,
        time_stamp_field,
        update_all,
        destination_query,
        destination_filter,
    }
}

/// What no one type's checks can see: a table with several types, `memberOf` on a table,
/// groups filled from both sides, and mappings of types the job does not run.
fn check_across_types(
    objects: &[ObjectPlan],
    table: Option<&str>,
    fields_map: &[FieldMap],
    objects_option: &[ObjectsOption],
    errors: &mut Errors,
) {
    // One table holds one type's rows: two types would each delete the other's as out of
    // their source.
    if table.is_some() && objects.len() > 1 {
        errors.add(
            "objectsOption",
            format!(
                "a table destination takes one object type; this job has {}",
                objects.len()
            ),
        );
    }
    if table.is_some()
        && let Some(f) = objects
            .iter()
            .flat_map(|op| op.fields.iter())
            .find(|f| f.is_member_of())
    {
        errors.add(
            format!("fieldsMap[{}]", f.map_index),
            "memberOf changes groups' members, which a table does not have",
        );
    }
    // A group's `member` filled from its rows and users' `memberOf` from theirs would each
    // undo the other: a user row that does not name a group its row gave the user leaves it.
    let fills = |member_of: bool| {
        objects.iter().find_map(|op| {
            op.fields
                .iter()
                .find(|f| {
                    if member_of {
                        f.is_member_of()
                    } else {
                        f.is_dn_set() && f.attribute.eq_ignore_ascii_case("member")
                    }
                })
                .map(|f| (op.object_type.code(), f.map_index))
        })
    };
    if let (Some((user_type, user_field)), Some((group_type, group_field))) =
        (fills(true), fills(false))
    {
        errors.add(
            format!("fieldsMap[{user_field}]"),
            format!(
                "object type {user_type} names its groups (memberOf) and object type {group_type} fills the groups' members (fieldsMap[{group_field}]): each would undo the other; keep one"
            ),
        );
    }
    // Mappings and queries for object types the job does not run are mistakes too: they
    // would be silently ignored otherwise.
    for (fi, f) in fields_map.iter().enumerate() {
        let code = f.object_type.get().copied().unwrap_or(1);
        if !objects_option
            .iter()
            .any(|o| o.object_type.get() == Some(&code))
        {
            errors.add(
                format!("fieldsMap[{fi}].objectType"),
                format!("object type {code} has no objectsOption entry"),
            );
        }
    }
}

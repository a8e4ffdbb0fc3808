//! Who is calling. Built by each dialect's authentication; read by the
//! service's policy checks.

use ember_model::{ProjectId, UserId};

#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: UserId,
    pub project_id: ProjectId,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }

    /// Readers may look but not change anything.
    pub fn can_write(&self) -> bool {
        self.is_admin() || self.roles.iter().any(|r| r == "member" || r == "_member_")
    }

    /// Whether this caller may act on a resource of `project`. A foreign
    /// resource answers exactly like a missing one, so ids leak nothing.
    pub fn sees(&self, project: &ProjectId) -> bool {
        self.is_admin() || &self.project_id == project
    }
}

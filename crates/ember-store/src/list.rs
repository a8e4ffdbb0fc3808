//! Listing parameters shared by every backend: filters, sort, pagination.

use ember_model::{Metadata, ProjectId, SnapshotId, SnapshotStatus, VolumeId, VolumeStatus};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// Columns a list can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Id,
    CreatedAt,
    UpdatedAt,
    Status,
    Name,
    Description,
    Size,
    VolumeId,
    ProjectId,
    UserId,
}

#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    pub id: Option<SnapshotId>,
    pub name: Option<String>,
    pub status: Option<SnapshotStatus>,
    pub volume_id: Option<VolumeId>,
    pub metadata: Metadata,
    /// A filter the backend cannot express matches nothing (Cinder's
    /// behaviour for unknown filters).
    pub match_nothing: bool,
}

#[derive(Clone, Debug, Default)]
pub struct VolumeFilter {
    pub name: Option<String>,
    pub status: Option<VolumeStatus>,
    pub availability_zone: Option<String>,
    pub bootable: Option<bool>,
    pub metadata: Metadata,
    pub match_nothing: bool,
}

#[derive(Clone, Debug)]
pub struct ListQuery<F> {
    /// `None` lists every project (admin `all_tenants`).
    pub project: Option<ProjectId>,
    pub filter: F,
    /// Sort keys in priority order; `id` is always appended as a tiebreaker.
    pub sort: Vec<(SortKey, SortDir)>,
    /// Resume after this item (which must exist in the listing's scope).
    pub marker: Option<Uuid>,
    pub limit: Option<u64>,
    pub offset: u64,
    pub with_count: bool,
}

impl<F: Default> Default for ListQuery<F> {
    fn default() -> Self {
        ListQuery {
            project: None,
            filter: F::default(),
            sort: vec![(SortKey::CreatedAt, SortDir::Desc)],
            marker: None,
            limit: None,
            offset: 0,
            with_count: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Total matching items before pagination, when asked for.
    pub count: Option<u64>,
    /// Whether items exist beyond this page.
    pub more: bool,
    /// The marker did not name an item in scope.
    pub marker_not_found: bool,
}

impl<F> ListQuery<F> {
    /// The sort keys with `id` appended (in the last key's direction) when
    /// absent: a total order, so keyset paging visits every row once.
    pub(crate) fn total_sort(&self) -> Vec<(SortKey, SortDir)> {
        let mut sort = self.sort.clone();
        if !sort.iter().any(|(k, _)| *k == SortKey::Id) {
            let dir = sort.last().map(|(_, d)| *d).unwrap_or(SortDir::Desc);
            sort.push((SortKey::Id, dir));
        }
        sort
    }

    /// What a listing whose filter can match nothing answers.
    pub(crate) fn empty_page<T>(&self) -> Page<T> {
        Page {
            items: vec![],
            count: self.with_count.then_some(0),
            more: false,
            marker_not_found: false,
        }
    }

    /// The page from the rows an engine read, in order. `paged_in_sql`:
    /// the engine applied offset and limit + 1 itself (only when there is
    /// no metadata filter, which engines apply here, in Rust).
    pub(crate) fn finish_page<T>(
        &self,
        mut items: Vec<T>,
        mut count: Option<u64>,
        metadata: &Metadata,
        metadata_of: impl Fn(&T) -> &Metadata,
        paged_in_sql: bool,
    ) -> Page<T> {
        if !paged_in_sql {
            items.retain(|item| {
                let have = metadata_of(item);
                metadata.iter().all(|(k, v)| have.get(k) == Some(v))
            });
            if self.with_count {
                count = Some(items.len() as u64);
            }
            items.drain(..(self.offset as usize).min(items.len()));
            if let Some(limit) = self.limit {
                items.truncate(limit as usize + 1);
            }
        }
        let more = self.limit.is_some_and(|l| items.len() as u64 > l);
        if let Some(limit) = self.limit {
            items.truncate(limit as usize);
        }
        Page {
            items,
            count,
            more,
            marker_not_found: false,
        }
    }
}

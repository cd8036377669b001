// Endpoint configs as plain data, shared by the deployment workflow and the serving activities. This
// module must stay free of Node built-ins because the workflow bundle imports it.
import type { EndpointTarget, PipelineSpec, ServedEntityTarget, ServingSpec } from './types';

/**
 * Served entity name of a model version, as Databricks derives it when a request names none: the last
 * dot-separated part of the model name, a dash and the version.
 */
export function servedEntityName(modelName: string, version: string): string {
  const parts = modelName.split('.');
  return `${parts[parts.length - 1]}-${version}`;
}

/** The served entity that runs one model version with the spec's sizing. */
export function servedEntity(serving: ServingSpec, modelName: string, version: string): ServedEntityTarget {
  return {
    name: servedEntityName(modelName, version),
    entity_name: modelName,
    entity_version: version,
    workload_size: serving.workloadSize,
    scale_to_zero_enabled: serving.scaleToZeroEnabled,
  };
}

/** Returns a config where one served entity takes all traffic. */
export function singleEntityTarget(entity: ServedEntityTarget): EndpointTarget {
  return { entities: [entity], routes: [{ served_entity_name: entity.name, traffic_percentage: 100 }] };
}

/** Returns a canary config: `canary` gets `percentage` of the traffic and `stable` the rest. */
export function canaryTarget(stable: ServedEntityTarget, canary: ServedEntityTarget, percentage: number): EndpointTarget {
  return {
    entities: [stable, canary],
    routes: [
      { served_entity_name: stable.name, traffic_percentage: 100 - percentage },
      { served_entity_name: canary.name, traffic_percentage: percentage },
    ],
  };
}

/** Returns the served entity with the largest traffic share, other than `except`: the stable side of a canary. */
export function mainEntity(config: EndpointTarget, except?: string): ServedEntityTarget | undefined {
  const share = (name: string): number => config.routes.find((route) => route.served_entity_name === name)?.traffic_percentage ?? 0;
  return config.entities
    .filter((entity) => entity.name !== except)
    .sort((a, b) => share(b.name) - share(a.name))[0];
}

/** True when a served config has exactly the target's entities (name, model, version, sizing) and routes. */
export function matchesTarget(config: EndpointTarget | undefined, target: EndpointTarget): boolean {
  if (!config || config.entities.length !== target.entities.length) return false;
  const entityKey = (entity: ServedEntityTarget): string =>
    [entity.name, entity.entity_name, entity.entity_version, entity.workload_size, entity.scale_to_zero_enabled].join('|');
  const routes = (value: EndpointTarget): string[] =>
    value.routes.filter((route) => route.traffic_percentage > 0).map((route) => `${route.served_entity_name}=${route.traffic_percentage}`);
  const sameSet = (a: string[], b: string[]): boolean => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
  return sameSet(config.entities.map(entityKey), target.entities.map(entityKey)) && sameSet(routes(config), routes(target));
}

/** Describes the routes in one line, such as `hotel_model-3 (version 3) 90%, hotel_model-4 (version 4) 10%`. */
export function describeTarget(target: EndpointTarget): string {
  return target.routes
    .map((route) => {
      const entity = target.entities.find((candidate) => candidate.name === route.served_entity_name);
      return `${route.served_entity_name} (version ${entity?.entity_version ?? '?'}) ${route.traffic_percentage}%`;
    })
    .join(', ');
}

/**
 * Returns every raw booking column a model of any feature set may read. The smoke test sends them all,
 * because the served version may use another feature set than the run that deploys it, and MLflow
 * ignores columns outside a model's signature.
 */
export function bookingColumns(spec: Pick<PipelineSpec, 'ingest'>): string[] {
  const renamed = (name: string): string => spec.ingest.renames[name] ?? name;
  return [...spec.ingest.numericFeatures.map((feature) => renamed(feature.name)), ...spec.ingest.categoricalFeatures.map(renamed)];
}

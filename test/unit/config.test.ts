import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { buildPipelineSpec, ConfigError, DEFAULT_CONFIG_FILE, loadProjectConfig, resolveEnvironment } from '../../config/load';
import { stackSettings } from '../../config/stack';
import { tempDir } from '../helpers/fixtures';

function writeConfig(edit: (config: Record<string, any>) => void): string {
  const config = YAML.parse(fs.readFileSync(DEFAULT_CONFIG_FILE, 'utf8'));
  edit(config);
  const file = path.join(tempDir('config'), 'project.yml');
  fs.writeFileSync(file, YAML.stringify(config));
  return file;
}

describe('project config', () => {
  it('loads the shipped config', () => {
    const config = loadProjectConfig();
    expect(config.environments.dev).toEqual({ catalog: 'mlops_dev', schema: 'acikgozm' });
    expect(config.model.feature_set).toBe('course');
    const course = config.feature_sets.course;
    expect(course.numeric_inputs).toHaveLength(11);
    expect(course.categorical_inputs).toEqual(['type_of_meal_plan', 'room_type_reserved']);
    expect(course.derived_inputs).toEqual([]);
    expect(course.parameters).toEqual({ learning_rate: 0.02, n_estimators: 500, num_leaves: 17 });
  });

  it('defines the extended feature set on top of the course inputs', () => {
    const { course, extended } = loadProjectConfig().feature_sets;
    expect(extended.numeric_inputs).toEqual([...course.numeric_inputs, 'arrival_year', 'arrival_month', 'arrival_date']);
    expect(extended.derived_inputs).toEqual(expect.arrayContaining(['arrival_weekday', 'booking_month', 'total_nights']));
  });

  it('trains the feature set chosen for a run', () => {
    const config = loadProjectConfig();
    const base = { env: 'dev', sourcePath: 'data.csv', gitSha: 'abc', branch: 'main' };
    expect(buildPipelineSpec(config, base).training.featureSet).toBe('course');
    const extended = buildPipelineSpec(config, { ...base, featureSet: 'extended' }).training;
    expect(extended.featureSet).toBe('extended');
    expect(extended.derivedInputs).toHaveLength(9);
    expect(() => buildPipelineSpec(config, { ...base, featureSet: 'wide' })).toThrow(
      'Unknown feature set "wide". Choose one of course, extended',
    );
  });

  it('adds the segment as an input when training on all rows', () => {
    const config = loadProjectConfig();
    const base = { env: 'dev', sourcePath: 'data.csv', gitSha: 'abc', branch: 'main' };
    expect(buildPipelineSpec(config, base).training.trainingRows).toBe('segment');
    const all = buildPipelineSpec(config, { ...base, trainingRows: 'all' }).training;
    expect(all.trainingRows).toBe('all');
    expect(all.categoricalInputs).toEqual(['type_of_meal_plan', 'room_type_reserved', 'market_segment_type']);
  });

  it('rejects a feature set input that the tables lack', () => {
    const file = writeConfig((config) => {
      (config.feature_sets as Record<string, { numeric_inputs: string[] }>).course.numeric_inputs.push('lead_days');
    });
    expect(() => loadProjectConfig(file)).toThrow(/feature_sets\.course\.numeric_inputs\.11.*lead_days is not a column/);
  });

  it('rejects an unknown default feature set', () => {
    const file = writeConfig((config) => {
      (config.model as Record<string, unknown>).feature_set = 'wide';
    });
    expect(() => loadProjectConfig(file)).toThrow(/model\.feature_set.*unknown feature set wide; defined: course, extended/);
  });

  it('builds the pipeline spec with catalog-prefixed names', () => {
    const spec = buildPipelineSpec(loadProjectConfig(), {
      env: 'acc',
      sourcePath: 'data.csv',
      gitSha: 'abc',
      branch: 'main',
    });
    expect(spec.registry.modelName).toBe('mlops_acc.acikgozm.hotel_reservations_model_basic');
    expect(spec.registry.alias).toBe('latest-model');
    expect(spec.tracking.experiment).toBe('/Shared/hotel-reservations-basic');
    expect(spec.serving.endpoint).toBe('hotel-reservations-model-basic-serving');
    expect(path.isAbsolute(spec.sourcePath)).toBe(true);
    expect(JSON.stringify(spec).length).toBeLessThan(10_000);
  });

  it('rejects an unknown environment with the defined ones', () => {
    expect(() => resolveEnvironment(loadProjectConfig(), 'qa')).toThrow(/Unknown environment 'qa'.*dev, acc, prd/);
  });

  it('reports a missing file', () => {
    expect(() => loadProjectConfig('/nonexistent/project.yml')).toThrow(/Cannot read config file \/nonexistent\/project.yml/);
  });

  it('reports invalid YAML with the file', () => {
    const file = path.join(tempDir('config'), 'broken.yml');
    fs.writeFileSync(file, 'environments: [unclosed');
    expect(() => loadProjectConfig(file)).toThrow(ConfigError);
    expect(() => loadProjectConfig(file)).toThrow(/broken.yml is not valid YAML/);
  });

  it('names the key path of an unsupported dtype', () => {
    const file = writeConfig((config) => {
      config.data.numeric_features[0].dtype = 'int128';
    });
    expect(() => loadProjectConfig(file)).toThrow(/data\.numeric_features\.0\.dtype/);
  });

  it('rejects the reserved alias latest', () => {
    const file = writeConfig((config) => {
      config.registry.alias = 'latest';
    });
    expect(() => loadProjectConfig(file)).toThrow(/registry\.alias: 'latest' is reserved/);
  });

  it('rejects corrections of a non-categorical column', () => {
    const file = writeConfig((config) => {
      config.data.value_corrections = { lead_time: { '-1': '0' } };
    });
    expect(() => loadProjectConfig(file)).toThrow(/data\.value_corrections\.lead_time: corrections apply to categorical/);
  });

  it('rejects an invalid port variable', () => {
    expect(() => stackSettings({ MLOPS_MLFLOW_PORT: 'abc' })).toThrow(/MLOPS_MLFLOW_PORT="abc"/);
    expect(stackSettings({ MLOPS_MLFLOW_PORT: '5123' }).mlflowPort).toBe(5123);
  });
});
